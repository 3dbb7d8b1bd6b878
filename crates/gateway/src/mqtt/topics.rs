//! Topics and payloads: how a published message becomes a reading, how a
//! subscription filter becomes a sensor pattern, and how a reading goes
//! out again as a topic and a payload.
//!
//! The default mapping: topic `sensors/<sensor name>`, payload a plain
//! number (`21.5`) or a JSON object `{"value": 21.5}` with an optional
//! time, `"ts"` in seconds since the epoch (a fraction allowed), or
//! `"ts_ms"` / `"ts_us"` in milli- or microseconds. Without a time the
//! reading is stamped on arrival.
//!
//! Everything here is pure: the session calls it with the configured
//! limits, the service then checks the scope, the rate and the catalog.

use sensegate_core::stats::IngestRefusal;
use sensegate_proto::MessageLimits;
use sensegate_proto::envelope::is_name;

use crate::pattern::Pattern;
use crate::reading::Reading;

/// Where published readings live, and where subscribers get them.
pub const PREFIX: &str = "sensors/";

/// Longest plain-number payload read (`-1.2345678901234567e-308` and
/// some white space).
const MAX_NUMBER_BYTES: usize = 64;

/// How a reading is sent to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// The value as a decimal number: `21.5`.
    Plain,
    /// `{"value":21.5,"ts_us":1700000000000000,"quality":"good"}`.
    Json,
}

impl PayloadFormat {
    /// From its name: `plain` or `json`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "plain" => Some(Self::Plain),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// The user property by which an MQTT 5 client picks its payload format,
/// on CONNECT (for every subscription) or on SUBSCRIBE (for those filters).
pub const FORMAT_PROPERTY: &str = "format";

/// A published message, read: the sensor it names and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The sensor name (passed the name rule).
    pub sensor: String,
    /// The value.
    pub value: f64,
    /// When it was read, if the payload said.
    pub timestamp_us: Option<i64>,
}

/// Reads a published topic and payload by the default mapping.
///
/// # Errors
/// [`IngestRefusal::Unmapped`] for a topic outside `sensors/` or a name
/// the name rule refuses; [`IngestRefusal::BadPayload`] for a payload
/// that is not a finite number or a JSON object with one.
pub fn read_publish(
    topic: &str,
    payload: &[u8],
    limits: &MessageLimits,
) -> Result<Published, IngestRefusal> {
    let sensor = topic
        .strip_prefix(PREFIX)
        .filter(|name| is_name(name, limits.max_name_bytes))
        .ok_or(IngestRefusal::Unmapped)?;
    let (value, timestamp_us) = read_payload(payload)?;
    Ok(Published {
        sensor: sensor.to_owned(),
        value,
        timestamp_us,
    })
}

/// A payload: a plain number, or a JSON object with `value`.
fn read_payload(payload: &[u8]) -> Result<(f64, Option<i64>), IngestRefusal> {
    let text = std::str::from_utf8(payload).map_err(|_| IngestRefusal::BadPayload)?;
    let text = text.trim_ascii();
    if text.starts_with('{') {
        return read_json(text);
    }
    Ok((number(text)?, None))
}

/// A payload that is one plain number (white space around it allowed).
///
/// # Errors
/// [`IngestRefusal::BadPayload`] for anything else.
pub fn read_number(payload: &[u8]) -> Result<f64, IngestRefusal> {
    let text = std::str::from_utf8(payload).map_err(|_| IngestRefusal::BadPayload)?;
    number(text.trim_ascii())
}

fn number(text: &str) -> Result<f64, IngestRefusal> {
    if text.len() > MAX_NUMBER_BYTES {
        return Err(IngestRefusal::BadPayload);
    }
    parse_finite(text).ok_or(IngestRefusal::BadPayload)
}

/// A decimal number, finite (Rust's float syntax, which also takes `inf`
/// and `nan`: those are refused here).
fn parse_finite(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[derive(serde::Deserialize)]
struct JsonReading {
    value: serde_json::Number,
    ts: Option<f64>,
    ts_ms: Option<i64>,
    ts_us: Option<i64>,
}

fn read_json(text: &str) -> Result<(f64, Option<i64>), IngestRefusal> {
    let r: JsonReading = serde_json::from_str(text).map_err(|_| IngestRefusal::BadPayload)?;
    let value = r
        .value
        .as_f64()
        .filter(|v| v.is_finite())
        .ok_or(IngestRefusal::BadPayload)?;
    let ts = match (r.ts, r.ts_ms, r.ts_us) {
        (None, None, None) => None,
        (Some(s), None, None) => Some(seconds_to_us(s)?),
        (None, Some(ms), None) => Some(ms.checked_mul(1000).ok_or(IngestRefusal::BadPayload)?),
        (None, None, Some(us)) => Some(us),
        // Two times that may disagree: which one is meant is a guess.
        _ => return Err(IngestRefusal::BadPayload),
    };
    Ok((value, ts))
}

fn seconds_to_us(s: f64) -> Result<i64, IngestRefusal> {
    let us = (s * 1e6).round();
    // The range of an i64 of microseconds, well inside f64's exact
    // integers for any time that is not absurd (the service refuses
    // times far ahead anyway).
    #[expect(
        clippy::cast_possible_truncation,
        reason = "checked against the i64 range just before"
    )]
    if us.is_finite() && us.abs() < 9.0e18 {
        Ok(us as i64)
    } else {
        Err(IngestRefusal::BadPayload)
    }
}

/// A filter whose sensor pattern is over `limits.max_pattern_bytes`
/// (refused with `0x8F`, rather than granted and never delivering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternTooLong;

/// The sensor pattern a subscription filter stands for, or `None` when the
/// filter can match no topic this broker publishes (every reading goes out
/// as `sensors/<name>`). The pattern may match more than the filter (`+`
/// becomes `*`, which also spans `/`); the connection checks each reading's
/// topic against the filter itself before sending it.
///
/// # Errors
/// [`PatternTooLong`] when the pattern would be over the configured cap.
pub fn filter_pattern(
    filter: &str,
    limits: &MessageLimits,
) -> Result<Option<Pattern>, PatternTooLong> {
    let mut levels = filter.split('/');
    match levels.next() {
        // `#` alone: everything; `+`: the first level, which is `sensors`.
        Some("#") => return Ok(Some(Pattern::any())),
        Some("+" | "sensors") => {}
        _ => return Ok(None),
    }
    let mut text = String::new();
    let mut first = true;
    for level in levels {
        if !first {
            text.push('/');
        }
        first = false;
        match level {
            "#" => {
                // `a/#` matches `a` itself too [MQTT-4.7.1-2]: the pattern is
                // `a*`, wider still (`ab`), and the filter decides.
                // (`sensors/#` matches `sensors` too, which no reading is.)
                if text.ends_with('/') {
                    text.pop();
                }
                if !text.ends_with('*') {
                    text.push('*');
                }
                break;
            }
            "+" => text.push('*'),
            // A literal level: only name bytes (so never a glob character).
            l if l.bytes().all(sensegate_proto::envelope::is_name_byte) => text.push_str(l),
            _ => return Ok(None),
        }
    }
    if first || text.is_empty() {
        // `sensors` or `+` alone: no sensor has an empty name.
        return Ok(None);
    }
    Pattern::parse("filter", &text, limits)
        .map(Some)
        .map_err(|_| PatternTooLong)
}

/// The topic a reading is published on.
#[must_use]
pub fn topic_of(sensor: &str) -> String {
    let mut t = String::with_capacity(PREFIX.len() + sensor.len());
    t.push_str(PREFIX);
    t.push_str(sensor);
    t
}

/// A reading's payload in `format`, appended to `out`. Written by hand
/// with `ryu` and `itoa` (no JSON value is built, no formatter machinery):
/// this runs once per reading per subscriber.
pub fn write_payload(reading: &Reading, format: PayloadFormat, out: &mut Vec<u8>) {
    let mut float = ryu::Buffer::new();
    // ryu writes `NaN` and `inf` for those: JSON has no such numbers.
    let value = reading.value.is_finite().then(|| {
        let text = float.format_finite(reading.value);
        // `21.0` as `21`, as people write it.
        text.strip_suffix(".0").unwrap_or(text).as_bytes()
    });
    match format {
        PayloadFormat::Plain => {
            out.extend_from_slice(value.unwrap_or(if reading.value.is_nan() {
                b"NaN"
            } else if reading.value > 0.0 {
                b"inf"
            } else {
                b"-inf"
            }));
        }
        PayloadFormat::Json => {
            out.extend_from_slice(b"{\"value\":");
            out.extend_from_slice(value.unwrap_or(b"null"));
            out.extend_from_slice(b",\"ts_us\":");
            out.extend_from_slice(itoa::Buffer::new().format(reading.timestamp_us).as_bytes());
            out.extend_from_slice(b",\"quality\":\"");
            out.extend_from_slice(reading.quality.to_wire().name().as_bytes());
            out.extend_from_slice(b"\"}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Quality;

    const L: MessageLimits = MessageLimits::DEFAULT;

    #[test]
    fn the_default_mapping_reads_numbers_and_json() {
        let p = read_publish("sensors/lab/t1", b" 21.5\n", &L).unwrap();
        assert_eq!(
            (p.sensor.as_str(), p.value, p.timestamp_us),
            ("lab/t1", 21.5, None)
        );
        let p = read_publish("sensors/x", br#"{"value": -3, "ts": 1700000000.25}"#, &L).unwrap();
        assert_eq!(
            (p.value, p.timestamp_us),
            (-3.0, Some(1_700_000_000_250_000))
        );
        let p = read_publish("sensors/x", br#"{"value":1,"ts_ms":1700000000123}"#, &L).unwrap();
        assert_eq!(p.timestamp_us, Some(1_700_000_000_123_000));
        let p = read_publish("sensors/x", br#"{"value":1,"ts_us":7,"unit":"C"}"#, &L).unwrap();
        assert_eq!(p.timestamp_us, Some(7));
    }

    #[test]
    fn unmapped_topics_and_bad_payloads_have_their_reason() {
        for topic in ["sensor/x", "sensors/", "sensors/a b", "other", "sensors/é"] {
            assert_eq!(
                read_publish(topic, b"1", &L),
                Err(IngestRefusal::Unmapped),
                "{topic}"
            );
        }
        let long = format!("sensors/{}", "a".repeat(L.max_name_bytes + 1));
        assert_eq!(read_publish(&long, b"1", &L), Err(IngestRefusal::Unmapped));
        let bad: [&[u8]; 10] = [
            b"",
            b"nan",
            b"inf",
            b"1e999",
            b"twenty",
            b"\xff",
            br#"{"value":"1"}"#,
            br#"{"val":1}"#,
            br#"{"value":1,"ts":1,"ts_ms":1}"#,
            br#"{"value":1,"ts_ms":9223372036854775807}"#,
        ];
        for payload in bad {
            assert_eq!(
                read_publish("sensors/x", payload, &L),
                Err(IngestRefusal::BadPayload),
                "{payload:?}"
            );
        }
        let padded = format!("{}1", " ".repeat(100));
        let p = read_publish("sensors/x", padded.as_bytes(), &L).unwrap();
        assert_eq!(p.value.to_bits(), 1.0_f64.to_bits());
        let long_number = "1".repeat(MAX_NUMBER_BYTES + 1);
        assert_eq!(
            read_publish("sensors/x", long_number.as_bytes(), &L),
            Err(IngestRefusal::BadPayload)
        );
    }

    #[test]
    fn filters_become_patterns_that_cover_them() {
        let cases = [
            ("#", Some("*")),
            ("sensors/#", Some("*")),
            ("+/#", Some("*")),
            ("sensors/lab/+", Some("lab/*")),
            ("sensors/+/t1", Some("*/t1")),
            ("sensors/lab/t1", Some("lab/t1")),
            ("sensors/lab/#", Some("lab*")),
            ("sensors/+/#", Some("*")),
            ("sensors", None),
            ("+", None),
            ("other/#", None),
            ("sensors/a*b", None),
            ("sensors/a?", None),
            ("sensors/a b", None),
        ];
        for (filter, want) in cases {
            let got = filter_pattern(filter, &L).unwrap();
            assert_eq!(got.as_ref().map(Pattern::as_str), want, "{filter}");
        }
        let long = format!("sensors/{}", "a".repeat(L.max_pattern_bytes + 1));
        assert_eq!(filter_pattern(&long, &L), Err(PatternTooLong));
        // Every name whose topic the filter matches, the pattern matches.
        for (filter, name) in [
            ("sensors/+/t1", "lab/t1"),
            ("sensors/lab/#", "lab/a/b"),
            ("sensors/lab/#", "lab"),
        ] {
            let topic = topic_of(name);
            assert!(sensegate_mqtt::filter_matches(filter, &topic));
            assert!(filter_pattern(filter, &L).unwrap().unwrap().matches(name));
        }
    }

    #[test]
    fn payloads_go_out_plain_or_as_json() {
        let r = Reading {
            sensor: "a".into(),
            timestamp_us: 5,
            value: 21.5,
            quality: Quality::Good,
        };
        let mut out = Vec::new();
        write_payload(&r, PayloadFormat::Plain, &mut out);
        assert_eq!(out, b"21.5");
        out.clear();
        write_payload(&r, PayloadFormat::Json, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"value": 21.5, "ts_us": 5, "quality": "good"})
        );
    }
}
