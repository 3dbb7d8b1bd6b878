//! Mapping rules: how the topics and payloads devices really send become
//! readings, for the devices that cannot be told to publish to
//! `sensors/<name>` (Tasmota, ESPHome, Shelly, Zigbee2MQTT and the like).
//!
//! A rule names a topic filter (with `+` and `#`), what the payload is
//! (`number`: the whole payload is one value; `json`: every number, or
//! boolean as 1 or 0, in a JSON object, nested objects included, is a
//! value), and a sensor-name template: `{N}` is topic level N (from 0),
//! `{field}` the JSON path of the value with its keys joined by `/`. Bytes
//! outside the sensor-name set (a space in a Zigbee2MQTT friendly name, say)
//! become `_`. An optional `fields` list of patterns keeps only the paths it
//! matches. The first rule whose filter matches the topic decides; a topic
//! no rule matches, and any topic under `sensors/`, takes the default
//! mapping ([`super::topics`]).
//!
//! Bounded: at most [`MAX_RULES`] rules, [`MAX_FIELD_PATTERNS`] field
//! patterns per rule, JSON objects walked [`MAX_DEPTH`] levels deep (deeper
//! values are ignored), and at most `mqtt.max_readings_per_message`
//! readings from one message (a message with more is refused whole, as a
//! push over its batch cap is). Strings, arrays and nulls are not readings
//! and are skipped.

use sensegate_core::stats::IngestRefusal;
use sensegate_proto::MessageLimits;
use sensegate_proto::envelope::{is_name, is_name_byte};

use super::topics::{self, Published};
use crate::pattern::Pattern;

/// Rules in `[mqtt]`, at most.
pub const MAX_RULES: usize = 64;
/// Patterns in one rule's `fields`, at most.
pub const MAX_FIELD_PATTERNS: usize = 64;
/// Levels of JSON objects walked.
pub const MAX_DEPTH: usize = 4;

/// What a rule's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulePayload {
    /// The whole payload is one number.
    Number,
    /// A JSON object: every number (or boolean) in it is a reading.
    Json,
}

/// One piece of a sensor-name template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Level(usize),
    Field,
}

/// A sensor-name template, parsed: `tasmota/{1}/{field}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

/// Why a template is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`, or an unknown placeholder.
    #[error("a placeholder must be {{N}} (a topic level) or {{field}}")]
    Placeholder,
    /// Text outside placeholders that is not sensor-name characters.
    #[error(
        "text outside placeholders must be sensor-name characters (letters, digits, . _ - : /)"
    )]
    Text,
    /// `{field}` with a number payload, or none with a JSON one.
    #[error("{{field}} is needed for a json payload, and only there")]
    Field,
    /// A level the filter cannot have.
    #[error("topic level {0} is past the filter's levels")]
    Level(usize),
}

impl Template {
    /// Parses `text` for a rule with `filter` and `payload`.
    ///
    /// # Errors
    /// [`TemplateError`].
    pub fn parse(text: &str, filter: &str, payload: RulePayload) -> Result<Self, TemplateError> {
        let levels = filter.split('/').count();
        let open_ended = filter.ends_with('#');
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after.find('}').ok_or(TemplateError::Placeholder)?;
                let name = &after[..end];
                pieces.push(if name == "field" {
                    Piece::Field
                } else {
                    let n: usize = name.parse().map_err(|_| TemplateError::Placeholder)?;
                    // A `#` level stands for any number of levels.
                    if !open_ended && n >= levels {
                        return Err(TemplateError::Level(n));
                    }
                    Piece::Level(n)
                });
                rest = &after[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let literal = &rest[..end];
                if !literal.bytes().all(is_name_byte) {
                    return Err(TemplateError::Text);
                }
                pieces.push(Piece::Text(literal.to_owned()));
                rest = &rest[end..];
            }
        }
        let has_field = pieces.contains(&Piece::Field);
        if has_field != (payload == RulePayload::Json) {
            return Err(TemplateError::Field);
        }
        Ok(Self(pieces))
    }

    /// The name for a topic's `levels` and a JSON `field` path, or `None`
    /// when a level is missing (a `#` that matched fewer levels).
    fn render(&self, levels: &[&str], field: &str) -> Option<String> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Level(n) => push_sanitized(&mut out, levels.get(*n)?),
                Piece::Field => out.push_str(field),
            }
        }
        Some(out)
    }
}

/// Appends `s` with every byte outside the sensor-name set as `_`.
fn push_sanitized(out: &mut String, s: &str) {
    out.extend(
        s.bytes()
            .map(|b| if is_name_byte(b) { char::from(b) } else { '_' }),
    );
}

/// One rule, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The topic filter it applies to.
    pub filter: String,
    /// What its payload is.
    pub payload: RulePayload,
    /// How its sensors are named.
    pub sensor: Template,
    /// When set, only JSON paths matching one of these become readings.
    pub fields: Option<Vec<Pattern>>,
}

/// A preset: the rule for a device family's usual topics.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// Its name in the config (`preset = "tasmota"`).
    pub name: &'static str,
    /// The topic filter.
    pub filter: &'static str,
    /// The payload.
    pub payload: RulePayload,
    /// The sensor-name template.
    pub sensor: &'static str,
}

/// The device families with a preset, as their firmware publishes by
/// default.
pub const PRESETS: [Preset; 5] = [
    // `tele/<device>/SENSOR`: `{"Time":..,"DS18B20":{"Temperature":21.5},..}`
    Preset {
        name: "tasmota",
        filter: "tele/+/SENSOR",
        payload: RulePayload::Json,
        sensor: "tasmota/{1}/{field}",
    },
    // `<node>/sensor/<name>/state`: `21.50`
    Preset {
        name: "esphome",
        filter: "+/sensor/+/state",
        payload: RulePayload::Number,
        sensor: "esphome/{0}/{2}",
    },
    // Gen1: `shellies/<id>/sensor/<name>`: `21.75`
    Preset {
        name: "shelly",
        filter: "shellies/+/sensor/+",
        payload: RulePayload::Number,
        sensor: "shelly/{1}/{3}",
    },
    // Gen2 and later: `<id>/status/<component>:<n>`: `{"id":0,"tC":21.6,..}`
    Preset {
        name: "shelly-gen2",
        filter: "+/status/+",
        payload: RulePayload::Json,
        sensor: "shelly/{0}/{2}/{field}",
    },
    // `zigbee2mqtt/<friendly name>`: `{"temperature":21.3,"humidity":48.4,..}`
    Preset {
        name: "zigbee2mqtt",
        filter: "zigbee2mqtt/+",
        payload: RulePayload::Json,
        sensor: "zigbee/{1}/{field}",
    },
];

/// The preset named `name`.
#[must_use]
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// Turns published messages into readings: the configured rules in order,
/// then the default mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapper {
    /// The configured rules.
    pub rules: Vec<Rule>,
    /// Readings one message may carry.
    pub max_readings: usize,
}

impl Mapper {
    /// Reads a published message.
    ///
    /// # Errors
    /// [`IngestRefusal::Unmapped`] when no rule (nor the default) maps the
    /// topic or a name it makes is not a sensor name;
    /// [`IngestRefusal::BadPayload`] when the payload is not what the rule
    /// reads, holds no reading, or more than `max_readings`.
    pub fn map(
        &self,
        topic: &str,
        payload: &[u8],
        limits: &MessageLimits,
    ) -> Result<Vec<Published>, IngestRefusal> {
        // `sensors/...` is the default mapping's, whatever a rule's
        // wildcards would also match (`+/status/+` and `sensors/status/x`).
        let rule = if topic.starts_with(topics::PREFIX) {
            None
        } else {
            self.rules
                .iter()
                .find(|r| sensegate_mqtt::filter_matches(&r.filter, topic))
        };
        let Some(rule) = rule else {
            return topics::read_publish(topic, payload, limits).map(|p| vec![p]);
        };
        let levels: Vec<&str> = topic.split('/').collect();
        let name = |field: &str| {
            rule.sensor
                .render(&levels, field)
                .filter(|n| is_name(n, limits.max_name_bytes))
                .ok_or(IngestRefusal::Unmapped)
        };
        match rule.payload {
            RulePayload::Number => {
                let value = topics::read_number(payload)?;
                Ok(vec![Published {
                    sensor: name("")?,
                    value,
                    timestamp_us: None,
                }])
            }
            RulePayload::Json => {
                let json: serde_json::Value =
                    serde_json::from_slice(payload).map_err(|_| IngestRefusal::BadPayload)?;
                let serde_json::Value::Object(object) = json else {
                    return Err(IngestRefusal::BadPayload);
                };
                let mut walk = Walk {
                    fields: rule.fields.as_deref(),
                    max: self.max_readings,
                    max_path: limits.max_name_bytes,
                    path: String::new(),
                    out: Vec::new(),
                };
                walk.object(&object, 1)?;
                if walk.out.is_empty() {
                    return Err(IngestRefusal::BadPayload);
                }
                walk.out
                    .into_iter()
                    .map(|(path, value)| {
                        Ok(Published {
                            sensor: name(&path)?,
                            value,
                            timestamp_us: None,
                        })
                    })
                    .collect()
            }
        }
    }
}

/// Collects the numbers (and booleans) of a JSON object with their paths:
/// only those `fields` keeps, none whose path alone is longer than a name
/// may be, refusing the message past `max` of them.
struct Walk<'a> {
    fields: Option<&'a [Pattern]>,
    max: usize,
    max_path: usize,
    path: String,
    out: Vec<(String, f64)>,
}

impl Walk<'_> {
    fn object(
        &mut self,
        object: &serde_json::Map<String, serde_json::Value>,
        depth: usize,
    ) -> Result<(), IngestRefusal> {
        for (key, value) in object {
            let at = self.path.len();
            if !self.path.is_empty() {
                self.path.push('/');
            }
            push_sanitized(&mut self.path, key);
            if self.path.len() <= self.max_path {
                self.value(value, depth)?;
            }
            self.path.truncate(at);
        }
        Ok(())
    }

    fn value(&mut self, value: &serde_json::Value, depth: usize) -> Result<(), IngestRefusal> {
        let number = match value {
            serde_json::Value::Number(n) => n.as_f64().filter(|v| v.is_finite()),
            serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
            serde_json::Value::Object(inner) if depth < MAX_DEPTH => {
                return self.object(inner, depth + 1);
            }
            _ => None,
        };
        let Some(v) = number else {
            return Ok(());
        };
        if self
            .fields
            .is_some_and(|f| !f.iter().any(|p| p.matches(&self.path)))
        {
            return Ok(());
        }
        if self.out.len() >= self.max {
            return Err(IngestRefusal::BadPayload);
        }
        self.out.push((self.path.clone(), v));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: MessageLimits = MessageLimits::DEFAULT;

    fn mapper(presets: &[&str]) -> Mapper {
        Mapper {
            rules: presets
                .iter()
                .map(|name| {
                    let p = preset(name).unwrap();
                    Rule {
                        filter: p.filter.to_owned(),
                        payload: p.payload,
                        sensor: Template::parse(p.sensor, p.filter, p.payload).unwrap(),
                        fields: None,
                    }
                })
                .collect(),
            max_readings: 32,
        }
    }

    fn names(got: &[Published]) -> Vec<(String, f64)> {
        let mut v: Vec<_> = got.iter().map(|p| (p.sensor.clone(), p.value)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn all_presets() -> Mapper {
        mapper(&["tasmota", "esphome", "shelly", "shelly-gen2", "zigbee2mqtt"])
    }

    /// Payloads as the firmware sends them (Tasmota 13 with a DS18B20 and an
    /// AM2301, and its energy monitor).
    #[test]
    fn tasmota_sensor_telemetry() {
        let m = all_presets();
        let got = m
            .map(
                "tele/garage/SENSOR",
                br#"{"Time":"2024-05-01T12:00:00","DS18B20":{"Id":"0316A2795F0B","Temperature":21.5},"AM2301":{"Temperature":22.3,"Humidity":45.1,"DewPoint":9.8},"TempUnit":"C"}"#,
                &L,
            )
            .unwrap();
        assert_eq!(
            names(&got),
            [
                ("tasmota/garage/AM2301/DewPoint".to_owned(), 9.8),
                ("tasmota/garage/AM2301/Humidity".to_owned(), 45.1),
                ("tasmota/garage/AM2301/Temperature".to_owned(), 22.3),
                ("tasmota/garage/DS18B20/Temperature".to_owned(), 21.5),
            ]
        );
        let energy = br#"{"Time":"2024-05-01T12:00:00","ENERGY":{"TotalStartTime":"2023-01-01T00:00:00","Total":12.345,"Yesterday":0.5,"Today":0.1,"Power":45,"ApparentPower":50,"ReactivePower":20,"Factor":0.9,"Voltage":230,"Current":0.196}}"#;
        let got = m.map("tele/plug-1/SENSOR", energy, &L).unwrap();
        assert_eq!(got.len(), 9);
        assert!(names(&got).contains(&("tasmota/plug-1/ENERGY/Power".to_owned(), 45.0)));
        // Tasmota's other topics are not readings: they fall to the default
        // mapping, which refuses them.
        assert_eq!(
            m.map("tele/garage/LWT", b"Online", &L),
            Err(IngestRefusal::Unmapped)
        );
    }

    #[test]
    fn esphome_and_shelly_gen1_states_are_plain_numbers() {
        let m = all_presets();
        let got = m
            .map("livingroom/sensor/temperature/state", b"21.50", &L)
            .unwrap();
        assert_eq!(
            names(&got),
            [("esphome/livingroom/temperature".to_owned(), 21.5)]
        );
        let got = m
            .map("shellies/shellyht-ABC123/sensor/humidity", b"48.5", &L)
            .unwrap();
        assert_eq!(
            names(&got),
            [("shelly/shellyht-ABC123/humidity".to_owned(), 48.5)]
        );
        assert_eq!(
            m.map("livingroom/sensor/temperature/state", b"unavailable", &L),
            Err(IngestRefusal::BadPayload)
        );
    }

    /// Shelly Plus H&T and Plus 1PM status messages (Gen2 RPC notifications).
    #[test]
    fn shelly_gen2_status() {
        let m = all_presets();
        let got = m
            .map(
                "shellyplusht-08b61fcb7e1c/status/temperature:0",
                br#"{"id":0,"tC":21.6,"tF":70.9}"#,
                &L,
            )
            .unwrap();
        assert!(names(&got).contains(&(
            "shelly/shellyplusht-08b61fcb7e1c/temperature:0/tC".to_owned(),
            21.6
        )));
        let switch = br#"{"id":0,"source":"init","output":false,"apower":12.5,"voltage":229.8,"current":0.054,"aenergy":{"total":1234.567,"by_minute":[0.0,0.0,0.0],"minute_ts":1714564800},"temperature":{"tC":45.6,"tF":114.1}}"#;
        let got = names(
            &m.map("shellyplus1pm-a8032ab12345/status/switch:0", switch, &L)
                .unwrap(),
        );
        let has = |n: &str, v: f64| {
            got.contains(&(format!("shelly/shellyplus1pm-a8032ab12345/switch:0/{n}"), v))
        };
        assert!(has("output", 0.0) && has("apower", 12.5) && has("aenergy/total", 1234.567));
        assert!(has("temperature/tC", 45.6));
        // The array and the string are not readings.
        assert!(
            !got.iter()
                .any(|(n, _)| n.contains("by_minute") || n.contains("source"))
        );
    }

    /// An Aqara temperature sensor and a motion sensor, as Zigbee2MQTT
    /// publishes them (friendly names may hold spaces).
    #[test]
    fn zigbee2mqtt_devices() {
        let m = all_presets();
        let got = m
            .map(
                "zigbee2mqtt/Living Room Sensor",
                br#"{"battery":97,"humidity":48.42,"linkquality":134,"power_outage_count":3,"pressure":1012.3,"temperature":21.37,"voltage":2995}"#,
                &L,
            )
            .unwrap();
        assert!(names(&got).contains(&("zigbee/Living_Room_Sensor/temperature".to_owned(), 21.37)));
        assert_eq!(got.len(), 7);
        let got = m
            .map(
                "zigbee2mqtt/hall motion",
                br#"{"battery":100,"illuminance":12,"occupancy":true,"device_temperature":27,"linkquality":87,"voltage":3025}"#,
                &L,
            )
            .unwrap();
        assert!(names(&got).contains(&("zigbee/hall_motion/occupancy".to_owned(), 1.0)));
        // A message with nothing numeric is not a reading.
        assert_eq!(
            m.map("zigbee2mqtt/hall motion", br#"{"state":"ON"}"#, &L),
            Err(IngestRefusal::BadPayload)
        );
    }

    #[test]
    fn fields_deep_objects_and_the_reading_cap() {
        let mut m = mapper(&["zigbee2mqtt"]);
        m.rules[0].fields = Some(vec![Pattern::new("temperature"), Pattern::new("humidity")]);
        let got = m
            .map(
                "zigbee2mqtt/t",
                br#"{"temperature":21,"humidity":40,"linkquality":99}"#,
                &L,
            )
            .unwrap();
        assert_eq!(got.len(), 2);
        // Deeper than MAX_DEPTH is ignored.
        let m = mapper(&["zigbee2mqtt"]);
        let deep = br#"{"a":{"b":{"c":{"d":{"e":1}}}},"x":2}"#;
        assert_eq!(
            names(&m.map("zigbee2mqtt/t", deep, &L).unwrap()),
            [("zigbee/t/x".to_owned(), 2.0)]
        );
        // More readings than the cap: refused whole.
        let many: String = format!(
            "{{{}}}",
            (0..33)
                .map(|i| format!("\"f{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            m.map("zigbee2mqtt/t", many.as_bytes(), &L),
            Err(IngestRefusal::BadPayload)
        );
        // A name past the cap is unmapped.
        let long = format!("zigbee2mqtt/{}", "n".repeat(200));
        assert_eq!(
            m.map(&long, br#"{"t":1}"#, &L),
            Err(IngestRefusal::Unmapped)
        );
        // The default mapping still applies to other topics.
        assert_eq!(m.map("sensors/x", b"3", &L).unwrap()[0].sensor, "x");
    }

    #[test]
    fn templates_are_checked() {
        let j = RulePayload::Json;
        let n = RulePayload::Number;
        assert!(Template::parse("a/{1}/{field}", "x/+", j).is_ok());
        assert!(Template::parse("a/{5}", "x/#", n).is_ok());
        assert_eq!(
            Template::parse("a/{2}", "x/+", n),
            Err(TemplateError::Level(2))
        );
        assert_eq!(
            Template::parse("a/{x}", "x/+", n),
            Err(TemplateError::Placeholder)
        );
        assert_eq!(
            Template::parse("a/{1", "x/+", n),
            Err(TemplateError::Placeholder)
        );
        assert_eq!(
            Template::parse("a b/{1}", "x/+", n),
            Err(TemplateError::Text)
        );
        assert_eq!(
            Template::parse("a/{1}", "x/+", j),
            Err(TemplateError::Field)
        );
        assert_eq!(
            Template::parse("a/{field}", "x/+", n),
            Err(TemplateError::Field)
        );
        for p in PRESETS {
            assert!(sensegate_mqtt::is_topic_filter(p.filter), "{}", p.name);
            assert!(
                Template::parse(p.sensor, p.filter, p.payload).is_ok(),
                "{}",
                p.name
            );
        }
    }
}
