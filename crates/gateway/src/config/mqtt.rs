//! `[mqtt]`: the MQTT listener's section, validated. The codec's caps are
//! config keys of their own (`mqtt.max_packet_bytes` and the rest), each
//! with the range it may take.

use super::ConfigError;
use super::raw::RawMqtt;
use super::validate::Validator;
use crate::mqtt::{MqttConfig, PayloadFormat};

/// One codec cap: its key, the value set, where it goes, its default, and
/// its range.
type CodecKey<'a> = (
    &'static str,
    Option<u64>,
    &'a mut usize,
    usize,
    usize,
    usize,
);

impl Validator<'_> {
    pub(super) fn mqtt(&self, r: &RawMqtt, has_cert: bool) -> Result<MqttConfig, ConfigError> {
        let d = MqttConfig::DEFAULT;
        let listen = match &r.listen {
            Some(s) => s.parse().map_err(|_| {
                self.invalid("mqtt.listen", "must be an address like 127.0.0.1:8883")
            })?,
            None => d.listen,
        };
        let enabled = r.enabled.unwrap_or(d.enabled);
        let tls = r.tls.unwrap_or(d.tls);
        if enabled && tls && !has_cert {
            return Err(self.invalid(
                "mqtt.tls",
                "is on (the default), but no certificate is set: set native.tls_cert and \
                 native.tls_key, or mqtt.tls = false for plain TCP",
            ));
        }
        let receive_maximum = self.range(
            "mqtt.receive_maximum",
            r.receive_maximum,
            u64::from(d.receive_maximum),
            1,
            65_535,
        )?;
        let payload = match r.payload.as_deref() {
            None => d.payload,
            Some(s) => PayloadFormat::parse(s)
                .ok_or_else(|| self.invalid("mqtt.payload", "must be \"plain\" or \"json\""))?,
        };
        Ok(MqttConfig {
            enabled,
            listen,
            tls,
            codec: self.mqtt_codec(r)?,
            receive_maximum: u16::try_from(receive_maximum).unwrap_or(u16::MAX),
            max_retained_per_subscribe: self.size(
                "mqtt.max_retained_per_subscribe",
                r.max_retained_per_subscribe,
                d.max_retained_per_subscribe,
                0,
                100_000,
            )?,
            payload,
        })
    }

    fn mqtt_codec(&self, r: &RawMqtt) -> Result<sensegate_mqtt::Limits, ConfigError> {
        let d = sensegate_mqtt::Limits::DEFAULT;
        let mut c = d;
        // (key, value set, where it goes, default, min, max)
        let keys: [CodecKey<'_>; 10] = [
            (
                "mqtt.max_packet_bytes",
                r.max_packet_bytes,
                &mut c.max_packet_bytes,
                d.max_packet_bytes,
                1024,
                1 << 20,
            ),
            (
                "mqtt.max_connect_bytes",
                r.max_connect_bytes,
                &mut c.max_connect_bytes,
                d.max_connect_bytes,
                256,
                65_536,
            ),
            (
                "mqtt.max_client_id_bytes",
                r.max_client_id_bytes,
                &mut c.max_client_id_bytes,
                d.max_client_id_bytes,
                23,
                1024,
            ),
            (
                "mqtt.max_username_bytes",
                r.max_username_bytes,
                &mut c.max_username_bytes,
                d.max_username_bytes,
                1,
                1024,
            ),
            // A token must fit.
            (
                "mqtt.max_password_bytes",
                r.max_password_bytes,
                &mut c.max_password_bytes,
                d.max_password_bytes,
                128,
                4096,
            ),
            (
                "mqtt.max_topic_bytes",
                r.max_topic_bytes,
                &mut c.max_topic_bytes,
                d.max_topic_bytes,
                16,
                65_535,
            ),
            (
                "mqtt.max_properties",
                r.max_properties,
                &mut c.max_properties,
                d.max_properties,
                1,
                1024,
            ),
            (
                "mqtt.max_user_properties",
                r.max_user_properties,
                &mut c.max_user_properties,
                d.max_user_properties,
                0,
                256,
            ),
            (
                "mqtt.max_property_bytes",
                r.max_property_bytes,
                &mut c.max_property_bytes,
                d.max_property_bytes,
                16,
                65_535,
            ),
            (
                "mqtt.max_filters",
                r.max_filters,
                &mut c.max_filters,
                d.max_filters,
                1,
                1024,
            ),
        ];
        for (key, value, field, def, min, max) in keys {
            *field = self.size(key, value, def, min, max)?;
        }
        Ok(c)
    }
}
