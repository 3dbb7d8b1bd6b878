//! `[mqtt]`: the MQTT listener's section, validated. The codec's caps are
//! config keys of their own (`mqtt.max_packet_bytes` and the rest), each
//! with the range it may take.

use super::ConfigError;
use super::raw::{RawMqtt, RawMqttRule};
use super::validate::Validator;
use crate::mqtt::rules::{self, Mapper, Rule, RulePayload, Template};
use crate::mqtt::{MqttConfig, PayloadFormat};
use crate::pattern::Pattern;

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
        let codec = self.mqtt_codec(r)?;
        let mapper = Mapper {
            rules: self.mqtt_rules(r.rule.as_deref().unwrap_or_default(), &codec)?,
            max_readings: self.size(
                "mqtt.max_readings_per_message",
                r.max_readings_per_message,
                d.mapper.max_readings,
                1,
                1000,
            )?,
        };
        Ok(MqttConfig {
            enabled,
            listen,
            tls,
            codec,
            receive_maximum: u16::try_from(receive_maximum).unwrap_or(u16::MAX),
            max_retained_per_subscribe: self.size(
                "mqtt.max_retained_per_subscribe",
                r.max_retained_per_subscribe,
                d.max_retained_per_subscribe,
                0,
                100_000,
            )?,
            payload,
            mapper,
        })
    }

    fn mqtt_rules(
        &self,
        raw: &[RawMqttRule],
        codec: &sensegate_mqtt::Limits,
    ) -> Result<Vec<Rule>, ConfigError> {
        if raw.len() > rules::MAX_RULES {
            return Err(self.invalid(
                "mqtt.rule",
                &format!("more than {} rules", rules::MAX_RULES),
            ));
        }
        raw.iter()
            .enumerate()
            .map(|(i, r)| self.mqtt_rule(r, codec).map_err(|e| self.in_section(e, i)))
            .collect()
    }

    fn mqtt_rule(
        &self,
        r: &RawMqttRule,
        codec: &sensegate_mqtt::Limits,
    ) -> Result<Rule, ConfigError> {
        let preset = match r.preset.as_deref() {
            None => None,
            Some(name) => Some(rules::preset(name).ok_or_else(|| {
                let names: Vec<&str> = rules::PRESETS.iter().map(|p| p.name).collect();
                self.invalid(
                    "mqtt.rule.preset",
                    &format!("must be one of {}", names.join(", ")),
                )
            })?),
        };
        let filter = r
            .filter
            .as_deref()
            .or(preset.map(|p| p.filter))
            .ok_or_else(|| self.invalid("mqtt.rule.filter", "is required without a preset"))?;
        if !sensegate_mqtt::is_topic_filter(filter) || filter.len() > codec.max_topic_bytes {
            return Err(self.invalid(
                "mqtt.rule.filter",
                "must be an MQTT topic filter (`+` a whole level, `#` the last), within mqtt.max_topic_bytes",
            ));
        }
        let payload = match r.payload.as_deref() {
            Some("number") => RulePayload::Number,
            Some("json") => RulePayload::Json,
            None => match preset {
                Some(p) => p.payload,
                None => {
                    return Err(self.invalid("mqtt.rule.payload", "is required without a preset"));
                }
            },
            Some(_) => {
                return Err(self.invalid("mqtt.rule.payload", "must be \"number\" or \"json\""));
            }
        };
        let sensor = r
            .sensor
            .as_deref()
            .or(preset.map(|p| p.sensor))
            .ok_or_else(|| self.invalid("mqtt.rule.sensor", "is required without a preset"))?;
        let sensor = Template::parse(sensor, filter, payload)
            .map_err(|e| self.invalid("mqtt.rule.sensor", &e.to_string()))?;
        let fields = match &r.fields {
            None => None,
            Some(f) if f.is_empty() || f.len() > rules::MAX_FIELD_PATTERNS => {
                return Err(self.invalid(
                    "mqtt.rule.fields",
                    &format!("must list 1 to {} patterns", rules::MAX_FIELD_PATTERNS),
                ));
            }
            Some(f) => Some(
                f.iter()
                    .map(|p| {
                        Pattern::parse(
                            "mqtt.rule.fields",
                            p,
                            &sensegate_proto::MessageLimits::DEFAULT,
                        )
                        .map_err(|_| {
                            self.invalid(
                                "mqtt.rule.fields",
                                "a pattern must be name characters, * and ?",
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Rule {
            filter: filter.to_owned(),
            payload,
            sensor,
            fields,
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
