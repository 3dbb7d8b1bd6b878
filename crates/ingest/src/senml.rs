//! SenML (RFC 8428) in JSON: what LwM2M and CoAP gateways emit.
//!
//! A pack is an array of records. Base fields (`bn` base name, `bt` base
//! time, `bu` base unit, `bv` base value) apply to the records after them
//! until changed; a record's name is `bn` + `n`, its time `bt` + `t`, its
//! value `bv` + `v`, or `vb` as 1 or 0 (RFC 8428 section 4.6). A resolved
//! time under 2^28 is relative to now (section 4.5.3). Records with only a
//! string (`vs`), data (`vd`) or sum (`s`) value are not readings and are
//! skipped. An unknown field whose name ends with `_` must be understood
//! (section 4.4): the pack is refused.
//!
//! Names must follow RFC 8428's rule, which is the sensor-name set: letters,
//! digits, `-`, `:`, `.`, `/` and `_`, starting with a letter or a digit.
//! Caps: records per pack, and name and unit length.

use serde::Deserialize;
use thiserror::Error;

/// A resolved time under this is relative to now, in seconds.
const RELATIVE_BELOW: f64 = 268_435_456.0;

/// The caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Records in one pack.
    pub max_records: usize,
    /// A resolved name.
    pub max_name_bytes: usize,
    /// A unit.
    pub max_unit_bytes: usize,
}

impl Limits {
    /// The defaults.
    pub const DEFAULT: Self = Self {
        max_records: 10_000,
        max_name_bytes: 128,
        max_unit_bytes: 32,
    };
}

/// Why a pack is refused. Messages name the record, never echo its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SenmlError {
    /// Not a JSON array of SenML records: what is wrong, and where.
    #[error("not a SenML JSON pack: {kind} at line {line} column {column}")]
    Json {
        /// What kind of problem (never the input's bytes).
        kind: &'static str,
        /// Its line, from 1.
        line: usize,
        /// Its column, from 1.
        column: usize,
    },
    /// More records than the cap.
    #[error("more than {max} records")]
    TooManyRecords {
        /// The cap.
        max: usize,
    },
    /// A resolved name that is empty, too long or has a character outside
    /// RFC 8428's set.
    #[error("record {record}: invalid name")]
    BadName {
        /// Its index, from 0.
        record: usize,
    },
    /// A unit over its cap or with a control character.
    #[error("record {record}: invalid unit")]
    BadUnit {
        /// Its index, from 0.
        record: usize,
    },
    /// A value or time that is not finite, or a time out of range.
    #[error("record {record}: invalid value or time")]
    BadNumber {
        /// Its index, from 0.
        record: usize,
    },
    /// A field this side must understand but does not (its name ends with
    /// `_`).
    #[error("record {record}: unsupported must-understand field")]
    MustUnderstand {
        /// Its index, from 0.
        record: usize,
    },
}

/// One record as read. Unknown fields are skipped as they are read (their
/// values never built), and only whether one must be understood (its name
/// ends with `_`) is kept: a generic map of them (serde's `flatten`) would
/// first build every unknown value in memory, tens of times the size of
/// its text.
#[derive(Default)]
struct Record {
    bn: Option<String>,
    bt: Option<f64>,
    bu: Option<String>,
    bv: Option<f64>,
    n: Option<String>,
    u: Option<String>,
    v: Option<f64>,
    vb: Option<bool>,
    t: Option<f64>,
    must_understand: bool,
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RecordVisitor)
    }
}

struct RecordVisitor;

impl<'de> serde::de::Visitor<'de> for RecordVisitor {
    type Value = Record;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a SenML record (a JSON object)")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let mut r = Record::default();
        // Keys are read as borrowed text where the input allows, else
        // owned; either way one key at a time.
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "bn" => r.bn = map.next_value()?,
                "bt" => r.bt = map.next_value()?,
                "bu" => r.bu = map.next_value()?,
                "bv" => r.bv = map.next_value()?,
                "n" => r.n = map.next_value()?,
                "u" => r.u = map.next_value()?,
                "v" => r.v = map.next_value()?,
                "vb" => r.vb = map.next_value()?,
                "t" => r.t = map.next_value()?,
                other => {
                    r.must_understand |= other.ends_with('_');
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(r)
    }
}

/// One resolved reading.
#[derive(Debug, Clone, PartialEq)]
pub struct SenmlReading {
    /// `bn` + `n`.
    pub name: String,
    /// The unit (`u`, else `bu`), possibly empty.
    pub unit: String,
    /// The value.
    pub value: f64,
    /// Microseconds since the epoch.
    pub timestamp_us: i64,
    /// Its record's index in the pack, from 0 (what an error names).
    pub record: usize,
}

/// The pack's records, refused past `max` as they are read: a body of
/// `[{},{},...]` must not become a million records before it is counted.
fn records(body: &[u8], max: usize) -> Result<Vec<Record>, SenmlError> {
    let over = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = serde::de::DeserializeSeed::deserialize(Pack { max, over: &over }, &mut de)
        .and_then(|records| de.end().map(|()| records));
    read.map_err(|e| {
        if over.get() {
            return SenmlError::TooManyRecords { max };
        }
        // Where, not what: serde's messages can quote the input.
        let kind = match e.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "a field of the wrong type",
            serde_json::error::Category::Eof => "unexpected end",
        };
        SenmlError::Json {
            kind,
            line: e.line(),
            column: e.column(),
        }
    })
}

/// Reads a JSON array of records, at most `max` of them.
struct Pack<'a> {
    max: usize,
    over: &'a std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Pack<'_> {
    type Value = Vec<Record>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Pack<'_> {
    type Value = Vec<Record>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a SenML pack (a JSON array of records)")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(r) = seq.next_element::<Record>()? {
            if out.len() == self.max {
                self.over.set(true);
                return Err(serde::de::Error::custom("too many records"));
            }
            out.push(r);
        }
        Ok(out)
    }
}

/// Parses and resolves a pack; `now_us` is the time relative times count
/// from.
///
/// # Errors
/// [`SenmlError`] for the first problem; the pack is then refused whole.
pub fn parse(body: &[u8], now_us: i64, limits: &Limits) -> Result<Vec<SenmlReading>, SenmlError> {
    let records = records(body, limits.max_records)?;
    let mut base_name = String::new();
    let mut base_time = 0.0;
    let mut base_unit = String::new();
    let mut base_value = 0.0;
    let mut out = Vec::new();
    #[expect(
        clippy::cast_precision_loss,
        reason = "microseconds since the epoch are exact in f64 for any real date"
    )]
    let now_secs = now_us as f64 / 1e6;
    for (i, r) in records.into_iter().enumerate() {
        if r.must_understand {
            return Err(SenmlError::MustUnderstand { record: i });
        }
        if let Some(bn) = r.bn {
            base_name = bn;
        }
        if let Some(bt) = r.bt {
            base_time = bt;
        }
        if let Some(bu) = r.bu {
            base_unit = bu;
        }
        if let Some(bv) = r.bv {
            base_value = bv;
        }
        let value = match (r.v, r.vb) {
            (Some(v), _) => base_value + v,
            (None, Some(b)) => f64::from(u8::from(b)),
            // A string, data or sum record, or a base-only one.
            (None, None) => continue,
        };
        let name = format!("{base_name}{}", r.n.as_deref().unwrap_or(""));
        if !is_senml_name(&name, limits.max_name_bytes) {
            return Err(SenmlError::BadName { record: i });
        }
        let unit = r.u.unwrap_or_else(|| base_unit.clone());
        if unit.len() > limits.max_unit_bytes || unit.chars().any(char::is_control) {
            return Err(SenmlError::BadUnit { record: i });
        }
        let mut t = base_time + r.t.unwrap_or(0.0);
        if t < RELATIVE_BELOW {
            t += now_secs;
        }
        let us = (t * 1e6).round();
        if !value.is_finite() || !us.is_finite() || us.abs() >= 9.0e18 {
            return Err(SenmlError::BadNumber { record: i });
        }
        #[expect(
            clippy::cast_possible_truncation,
            reason = "checked against the i64 range just before"
        )]
        let timestamp_us = us as i64;
        out.push(SenmlReading {
            name,
            unit,
            value,
            timestamp_us,
            record: i,
        });
    }
    Ok(out)
}

/// RFC 8428 section 4.5.1: letters, digits, `-`, `:`, `.`, `/`, `_`,
/// starting with a letter or a digit.
fn is_senml_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'.' | b'/' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits::DEFAULT;
    const NOW: i64 = 1_700_000_000_000_000;

    /// The examples of RFC 8428 section 5.
    #[test]
    fn the_rfc_examples_resolve() {
        // 5.1.1: a single datapoint.
        let got = parse(
            br#"[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]"#,
            NOW,
            &L,
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "urn:dev:ow:10e2073a01080063");
        assert_eq!((got[0].unit.as_str(), got[0].timestamp_us), ("Cel", NOW));
        // 5.1.2: multiple datapoints with a base name and base time.
        let pack = br#"[
            {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
            {"n":"current","u":"A","v":1.2}
        ]"#;
        let got = parse(pack, NOW, &L).unwrap();
        assert_eq!(got[1].name, "urn:dev:ow:10e2073a01080063:current");
        assert!((got[1].value - 1.2).abs() < 1e-12);
        // 5.1.3: multiple measurements, times relative to a base time.
        let pack = br#"[
            {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
            {"n":"current","t":-5,"v":1.2},
            {"n":"current","t":-4,"v":1.3}
        ]"#;
        let got = parse(pack, NOW, &L).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].unit, "A", "the base unit");
        assert_eq!(got[1].timestamp_us, 1_276_020_071_001_000);
        // A boolean, a string record skipped, a base value.
        let pack =
            br#"[{"bn":"d/","bv":10,"n":"a","v":1},{"n":"door","vb":true},{"n":"label","vs":"x"}]"#;
        let got = parse(pack, NOW, &L).unwrap();
        assert_eq!(
            got.iter()
                .map(|r| (r.name.as_str(), r.value))
                .collect::<Vec<_>>(),
            [("d/a", 11.0), ("d/door", 1.0)]
        );
        // A relative time (under 2^28) counts from now.
        let got = parse(br#"[{"n":"x","v":1,"t":-60}]"#, NOW, &L).unwrap();
        assert_eq!(got[0].timestamp_us, NOW - 60_000_000);
    }

    #[test]
    fn bad_packs_are_refused_with_their_reason() {
        let cases: [(&[u8], SenmlError); 6] = [
            (
                br#"[{"n":" bad","v":1}]"#,
                SenmlError::BadName { record: 0 },
            ),
            (br#"[{"n":"_x","v":1}]"#, SenmlError::BadName { record: 0 }),
            (
                br#"[{"n":"ok","v":1},{"v":2}]"#,
                SenmlError::BadName { record: 1 },
            ),
            (
                br#"[{"n":"x","v":1,"foo_":3}]"#,
                SenmlError::MustUnderstand { record: 0 },
            ),
            (
                br#"[{"n":"x","u":"\u0007","v":1}]"#,
                SenmlError::BadUnit { record: 0 },
            ),
            (
                br#"[{"n":"x","v":1,"t":1e300}]"#,
                SenmlError::BadNumber { record: 0 },
            ),
        ];
        for (pack, want) in cases {
            assert_eq!(
                parse(pack, NOW, &L),
                Err(want),
                "{}",
                String::from_utf8_lossy(pack)
            );
        }
        assert!(matches!(
            parse(b"{\"n\":\"x\"}", NOW, &L),
            Err(SenmlError::Json { .. })
        ));
        assert!(matches!(
            parse(br#"[{"n":"x","v":"1"}]"#, NOW, &L),
            Err(SenmlError::Json { .. })
        ));
        let many = format!("[{}]", [r#"{"n":"x","v":1}"#; 11].join(","));
        let small = Limits {
            max_records: 10,
            ..L
        };
        assert_eq!(
            parse(many.as_bytes(), NOW, &small),
            Err(SenmlError::TooManyRecords { max: 10 })
        );
        // Counted as they are read: a pack of a million empty records (3
        // bytes each) is refused at the cap, not collected first; the
        // error says where, not what.
        let mut empty = String::from("[{}");
        for _ in 0..1_000_000 {
            empty.push_str(",{}");
        }
        empty.push(']');
        assert_eq!(
            parse(empty.as_bytes(), NOW, &small),
            Err(SenmlError::TooManyRecords { max: 10 })
        );
        assert_eq!(
            parse(b"[{\"n\":\"secret\",\"v\":1},{\"n\":", NOW, &L)
                .unwrap_err()
                .to_string(),
            "not a SenML JSON pack: unexpected end at line 1 column 27"
        );
        let long = format!(r#"[{{"n":"{}","v":1}}]"#, "n".repeat(129));
        assert_eq!(
            parse(long.as_bytes(), NOW, &L),
            Err(SenmlError::BadName { record: 0 })
        );
    }
}
