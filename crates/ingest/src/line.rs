//! The InfluxDB line protocol, as InfluxDB 1.x and 2.x document it:
//!
//! ```text
//! measurement[,tag_key=tag_value...] field_key=field_value[,...] [timestamp]
//! ```
//!
//! - Measurements escape `,` and space with a backslash; tag keys, tag
//!   values and field keys escape `,`, `=` and space. A backslash before
//!   anything else is kept as it is.
//! - Field values: a float (`1`, `-1.5e3`), an integer (`12i`), an unsigned
//!   integer (`12u`), a boolean (`t`, `T`, `true`, `True`, `TRUE`, and the
//!   same for false), or a string in double quotes (escaping `"` and `\`).
//! - The timestamp is an integer in the request's precision (nanoseconds by
//!   default).
//! - Blank lines and lines starting with `#` are skipped; a line ends at
//!   `\n` (a `\r` before it is dropped). A newline always ends a line: a
//!   quote left open at the end of a line is an error on that line, never
//!   the rest of the body read as one string.
//!
//! Every length has a cap ([`Limits`]): the line, the tags and fields per
//! line, each key and each value, the lines per request. A line over its
//! cap is refused once its cap is passed, without buffering the rest of it.

use std::borrow::Cow;

use thiserror::Error;

/// The caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One line, newline excluded.
    pub max_line_bytes: usize,
    /// Tags on one line.
    pub max_tags: usize,
    /// Fields on one line.
    pub max_fields: usize,
    /// A measurement, tag key or field key, unescaped.
    pub max_key_bytes: usize,
    /// A tag value or a string field value, unescaped.
    pub max_value_bytes: usize,
    /// Lines (comments and blank lines included) in one request.
    pub max_lines: usize,
}

impl Limits {
    /// The defaults.
    pub const DEFAULT: Self = Self {
        max_line_bytes: 64 << 10,
        max_tags: 32,
        max_fields: 64,
        max_key_bytes: 128,
        max_value_bytes: 1024,
        max_lines: 100_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a line is not a point. Messages name the part and the numbers,
/// never the bytes, so they can be sent back and logged as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum LineError {
    /// The line is over `max_line_bytes`.
    #[error("line longer than {max} bytes")]
    TooLong {
        /// The cap.
        max: usize,
    },
    /// More lines than `max_lines`.
    #[error("more than {max} lines")]
    TooManyLines {
        /// The cap.
        max: usize,
    },
    /// Not UTF-8.
    #[error("not valid UTF-8")]
    NotUtf8,
    /// No measurement, or it is empty.
    #[error("missing measurement")]
    NoMeasurement,
    /// A tag without `=` or with an empty key or value.
    #[error("bad tag")]
    BadTag,
    /// No field set.
    #[error("missing fields")]
    NoFields,
    /// A field without `=`, or with an empty key.
    #[error("bad field")]
    BadField,
    /// A field value that is none of the types.
    #[error("field {field}: invalid value")]
    BadValue {
        /// The field's place on the line, from 1 (not its key: messages
        /// never echo the line's bytes).
        field: usize,
    },
    /// A quoted string not closed before the end of the line.
    #[error("unterminated string")]
    UnclosedQuote,
    /// A timestamp that is not an integer, or out of range.
    #[error("bad timestamp")]
    BadTimestamp,
    /// Something after the timestamp.
    #[error("unexpected text after the timestamp")]
    Trailing,
    /// Over `max_tags`, `max_fields`, `max_key_bytes` or `max_value_bytes`.
    #[error("{what} over the cap of {max}")]
    OverCap {
        /// Which cap.
        what: &'static str,
        /// The cap.
        max: usize,
    },
}

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A float.
    Float(f64),
    /// `12i`.
    Int(i64),
    /// `12u`.
    UInt(u64),
    /// A boolean.
    Bool(bool),
    /// A quoted string (not a reading).
    Str(String),
}

impl Value {
    /// The value as a reading, when it is a number or a boolean (1 or 0).
    /// Large integers lose precision past 2^53, as any float does.
    #[must_use]
    #[expect(
        clippy::cast_precision_loss,
        reason = "readings are f64; integers past 2^53 are rounded, as documented"
    )]
    pub fn as_reading(&self) -> Option<f64> {
        match self {
            Self::Float(v) => Some(*v),
            Self::Int(v) => Some(*v as f64),
            Self::UInt(v) => Some(*v as f64),
            Self::Bool(b) => Some(f64::from(u8::from(*b))),
            Self::Str(_) => None,
        }
    }
}

/// One line, parsed. Keys and values borrow from the line unless they had
/// escapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Point<'a> {
    /// The measurement.
    pub measurement: Cow<'a, str>,
    /// The tags, sorted by key.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The fields, in order.
    pub fields: Vec<(Cow<'a, str>, Value)>,
    /// The timestamp as written, in the request's precision.
    pub timestamp: Option<i64>,
}

/// The precision of timestamps in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Nanoseconds (the default).
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Minutes (InfluxDB 1.x only).
    Minutes,
    /// Hours (InfluxDB 1.x only).
    Hours,
}

impl Precision {
    /// From the `precision` parameter: `ns`, `us`, `ms`, `s` (2.x), and 1.x's
    /// `n`, `u`, `ms`, `s`, `m`, `h`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ns" | "n" => Some(Self::Nanoseconds),
            "us" | "u" | "µs" => Some(Self::Microseconds),
            "ms" => Some(Self::Milliseconds),
            "s" => Some(Self::Seconds),
            "m" => Some(Self::Minutes),
            "h" => Some(Self::Hours),
            _ => None,
        }
    }

    /// `t` in this precision, in microseconds since the epoch.
    ///
    /// # Errors
    /// [`LineError::BadTimestamp`] when it does not fit.
    pub fn to_micros(self, t: i64) -> Result<i64, LineError> {
        let us = match self {
            Self::Nanoseconds => Some(t.div_euclid(1000)),
            Self::Microseconds => Some(t),
            Self::Milliseconds => t.checked_mul(1000),
            Self::Seconds => t.checked_mul(1_000_000),
            Self::Minutes => t.checked_mul(60_000_000),
            Self::Hours => t.checked_mul(3_600_000_000),
        };
        us.ok_or(LineError::BadTimestamp)
    }
}

/// A line that is not a point, with its 1-based number (what a 400 says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("line {line}: {error}")]
pub struct BadLine {
    /// Its number, from 1.
    pub line: usize,
    /// Why.
    pub error: LineError,
}

/// Cuts a body that arrives in chunks into lines, holding at most one
/// line's cap of a partial line, and counting lines against `max_lines`.
#[derive(Debug)]
pub struct Splitter {
    limits: Limits,
    partial: Vec<u8>,
    /// Lines so far.
    lines: usize,
}

impl Splitter {
    /// A splitter for one request.
    #[must_use]
    pub const fn new(limits: Limits) -> Self {
        Self {
            limits,
            partial: Vec::new(),
            lines: 0,
        }
    }

    /// Feeds a chunk; calls `each` with every whole line (newline and a
    /// `\r` before it removed) and its 1-based number, and stops at the
    /// first error, the splitter's own ([`BadLine`], converted) or `each`'s.
    /// After an error the splitter must not be fed again.
    ///
    /// # Errors
    /// [`LineError::TooLong`] or [`LineError::TooManyLines`] with the line
    /// number, or `each`'s error.
    pub fn feed<E: From<BadLine>>(
        &mut self,
        mut chunk: &[u8],
        each: &mut impl FnMut(usize, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        while !chunk.is_empty() {
            let Some(nl) = chunk.iter().position(|&b| b == b'\n') else {
                return Ok(self.keep(chunk)?);
            };
            let (head, rest) = chunk.split_at(nl);
            chunk = &rest[1..];
            if self.partial.is_empty() {
                self.next_line()?;
                let line = self.trim(head)?;
                each(self.lines, line)?;
            } else {
                self.keep(head)?;
                self.next_line()?;
                let whole = std::mem::take(&mut self.partial);
                let line = self.trim(&whole)?;
                each(self.lines, line)?;
            }
        }
        Ok(())
    }

    /// The end of the body: the last line, if it had no newline.
    ///
    /// # Errors
    /// As [`Splitter::feed`].
    pub fn finish<E: From<BadLine>>(
        &mut self,
        each: &mut impl FnMut(usize, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.partial.is_empty() {
            return Ok(());
        }
        self.next_line()?;
        let whole = std::mem::take(&mut self.partial);
        let line = self.trim(&whole)?;
        each(self.lines, line)
    }

    fn next_line(&mut self) -> Result<(), BadLine> {
        self.lines += 1;
        if self.lines > self.limits.max_lines {
            return Err(self.bad(LineError::TooManyLines {
                max: self.limits.max_lines,
            }));
        }
        Ok(())
    }

    /// Keeps part of a line, within its cap (and one byte for a `\r`).
    fn keep(&mut self, part: &[u8]) -> Result<(), BadLine> {
        if self.partial.len() + part.len() > self.limits.max_line_bytes + 1 {
            self.partial = Vec::new();
            // The line being read: its newline has not come yet.
            let line = self.lines + 1;
            return Err(BadLine {
                line,
                error: LineError::TooLong {
                    max: self.limits.max_line_bytes,
                },
            });
        }
        self.partial.extend_from_slice(part);
        Ok(())
    }

    /// A line without its `\r`, within its cap.
    fn trim<'l>(&self, line: &'l [u8]) -> Result<&'l [u8], BadLine> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.limits.max_line_bytes {
            return Err(self.bad(LineError::TooLong {
                max: self.limits.max_line_bytes,
            }));
        }
        Ok(line)
    }

    const fn bad(&self, error: LineError) -> BadLine {
        BadLine {
            line: self.lines,
            error,
        }
    }
}

/// Parses one line; `None` for a blank line or a comment.
///
/// # Errors
/// [`LineError`] naming what is wrong.
pub fn parse<'a>(line: &'a [u8], limits: &Limits) -> Result<Option<Point<'a>>, LineError> {
    let line = std::str::from_utf8(line).map_err(|_| LineError::NotUtf8)?;
    let line = line.trim_start_matches(' ');
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut s = Scanner { rest: line };
    let measurement = s.token(MEASUREMENT_STOP, limits.max_key_bytes, "measurement")?;
    if measurement.is_empty() {
        return Err(LineError::NoMeasurement);
    }
    let mut tags = Vec::new();
    while s.eat(',') {
        if tags.len() == limits.max_tags {
            return Err(LineError::OverCap {
                what: "tags",
                max: limits.max_tags,
            });
        }
        let key = s.token(KEY_STOP, limits.max_key_bytes, "tag key")?;
        if key.is_empty() || !s.eat('=') {
            return Err(LineError::BadTag);
        }
        let value = s.token(KEY_STOP, limits.max_value_bytes, "tag value")?;
        if value.is_empty() {
            return Err(LineError::BadTag);
        }
        tags.push((key, value));
    }
    if !s.spaces() || s.rest.is_empty() {
        return Err(LineError::NoFields);
    }
    let mut fields = Vec::new();
    loop {
        if fields.len() == limits.max_fields {
            return Err(LineError::OverCap {
                what: "fields",
                max: limits.max_fields,
            });
        }
        let key = s.token(KEY_STOP, limits.max_key_bytes, "field key")?;
        if key.is_empty() || !s.eat('=') {
            return Err(LineError::BadField);
        }
        let value = s.field_value(fields.len() + 1, limits.max_value_bytes)?;
        fields.push((key, value));
        if !s.eat(',') {
            break;
        }
    }
    let timestamp = if s.spaces() && !s.rest.is_empty() {
        let end = s.rest.find(' ').unwrap_or(s.rest.len());
        let t = s.rest[..end]
            .parse::<i64>()
            .map_err(|_| LineError::BadTimestamp)?;
        s.rest = &s.rest[end..];
        s.spaces();
        Some(t)
    } else {
        None
    };
    if !s.rest.is_empty() {
        return Err(LineError::Trailing);
    }
    // InfluxDB keys a series by its tags sorted by key.
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(Point {
        measurement,
        tags,
        fields,
        timestamp,
    }))
}

/// Where a measurement ends, and what it may escape.
const MEASUREMENT_STOP: &[char] = &[',', ' '];
/// Where a tag key, tag value or field key ends, and what it may escape.
const KEY_STOP: &[char] = &[',', '=', ' '];

struct Scanner<'a> {
    rest: &'a str,
}

impl<'a> Scanner<'a> {
    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    /// Skips spaces; whether there was at least one.
    fn spaces(&mut self) -> bool {
        let before = self.rest.len();
        self.rest = self.rest.trim_start_matches(' ');
        self.rest.len() < before
    }

    /// Reads up to an unescaped `stop` character, unescaping `\` before a
    /// stop character (a backslash before anything else is kept).
    fn token(
        &mut self,
        stop: &[char],
        max: usize,
        what: &'static str,
    ) -> Result<Cow<'a, str>, LineError> {
        let bytes = self.rest.as_bytes();
        let mut end = 0;
        let mut escaped = false;
        while end < bytes.len() {
            let c = bytes[end];
            if c == b'\\' && end + 1 < bytes.len() && stop.contains(&char::from(bytes[end + 1])) {
                escaped = true;
                end += 2;
                continue;
            }
            if stop.contains(&char::from(c)) {
                break;
            }
            end += 1;
        }
        let raw = &self.rest[..end];
        self.rest = &self.rest[end..];
        let token = if escaped {
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek().is_some_and(|n| stop.contains(n)) {
                    continue;
                }
                out.push(c);
            }
            Cow::Owned(out)
        } else {
            Cow::Borrowed(raw)
        };
        if token.len() > max {
            return Err(LineError::OverCap { what, max });
        }
        Ok(token)
    }

    fn field_value(&mut self, place: usize, max: usize) -> Result<Value, LineError> {
        if let Some(r) = self.rest.strip_prefix('"') {
            // A quoted string: `\"` and `\\` are escapes; it must close on
            // this line.
            let bytes = r.as_bytes();
            let mut out = String::new();
            let mut i = 0;
            let mut from = 0;
            loop {
                match bytes.get(i) {
                    None => return Err(LineError::UnclosedQuote),
                    Some(b'\\') if matches!(bytes.get(i + 1), Some(b'"' | b'\\')) => {
                        out.push_str(&r[from..i]);
                        from = i + 1;
                        i += 2;
                    }
                    Some(b'"') => {
                        out.push_str(&r[from..i]);
                        self.rest = &r[i + 1..];
                        break;
                    }
                    Some(_) => i += 1,
                }
                if out.len() + (i - from) > max {
                    return Err(LineError::OverCap {
                        what: "string value",
                        max,
                    });
                }
            }
            return Ok(Value::Str(out));
        }
        let end = self.rest.find([',', ' ']).unwrap_or(self.rest.len());
        let text = &self.rest[..end];
        self.rest = &self.rest[end..];
        let bad = || LineError::BadValue { field: place };
        let value = match text {
            "t" | "T" | "true" | "True" | "TRUE" => Value::Bool(true),
            "f" | "F" | "false" | "False" | "FALSE" => Value::Bool(false),
            _ if text.ends_with('i') => {
                Value::Int(text[..text.len() - 1].parse().map_err(|_| bad())?)
            }
            _ if text.ends_with('u') => {
                Value::UInt(text[..text.len() - 1].parse().map_err(|_| bad())?)
            }
            _ => {
                // Rust's float syntax also takes `inf`, `nan` and a leading
                // `+`; the line protocol's does not.
                if !text.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
                    || text.contains(['i', 'n', 'N', 'I'])
                {
                    return Err(bad());
                }
                let v: f64 = text.parse().map_err(|_| bad())?;
                if !v.is_finite() {
                    return Err(bad());
                }
                Value::Float(v)
            }
        };
        Ok(value)
    }
}

/// Bytes a sensor name may hold (as the native protocol's name rule).
pub(crate) const fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/')
}

/// Appends `s` with every byte outside the sensor-name set as `_`.
pub(crate) fn push_sanitized(out: &mut String, s: &str) {
    if s.bytes().all(is_name_byte) {
        out.push_str(s);
        return;
    }
    out.reserve(s.len());
    out.extend(
        s.bytes()
            .map(|b| if is_name_byte(b) { char::from(b) } else { '_' }),
    );
}

/// A reading a point carries, named by the default rule.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedReading {
    /// `<measurement>/<tag values in key order>/<field>`, bytes outside the
    /// sensor-name set as `_`.
    pub sensor: String,
    /// The value.
    pub value: f64,
}

impl Point<'_> {
    /// Its readings, named `<measurement>/<tag values in key order>/<field>`
    /// (`cpu,host=gw1 usage=3` is `cpu/gw1/usage`); string fields are
    /// skipped.
    #[must_use]
    pub fn readings(&self) -> Vec<NamedReading> {
        let mut base = String::with_capacity(
            self.measurement.len() + self.tags.iter().map(|(_, v)| v.len() + 1).sum::<usize>(),
        );
        push_sanitized(&mut base, &self.measurement);
        for (_, v) in &self.tags {
            base.push('/');
            push_sanitized(&mut base, v);
        }
        self.fields
            .iter()
            .filter_map(|(k, v)| {
                let value = v.as_reading()?;
                // Sized once: a clone then a push would grow it again.
                let mut sensor = String::with_capacity(base.len() + 1 + k.len());
                sensor.push_str(&base);
                sensor.push('/');
                push_sanitized(&mut sensor, k);
                Some(NamedReading { sensor, value })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits::DEFAULT;

    fn one(line: &str) -> Point<'_> {
        parse(line.as_bytes(), &L).unwrap().unwrap()
    }

    #[test]
    fn the_documented_examples_parse() {
        let p = one("weather,location=us-midwest temperature=82 1465839830100400200");
        assert_eq!(p.measurement, "weather");
        assert_eq!(p.tags, [("location".into(), "us-midwest".into())]);
        assert_eq!(p.fields, [("temperature".into(), Value::Float(82.0))]);
        assert_eq!(p.timestamp, Some(1_465_839_830_100_400_200));
        let p = one(
            "cpu,host=gw1,cpu=cpu0 usage_idle=98.5,usage_user=12i,up=true,n=7u,msg=\"a \\\"b\\\" \\\\ c\"",
        );
        assert_eq!(p.tags[0], ("cpu".into(), "cpu0".into()), "sorted by key");
        assert_eq!(
            p.fields.iter().map(|f| f.1.clone()).collect::<Vec<_>>(),
            [
                Value::Float(98.5),
                Value::Int(12),
                Value::Bool(true),
                Value::UInt(7),
                Value::Str("a \"b\" \\ c".into())
            ]
        );
        let p = one("my\\ meas\\,ure,tag\\ key=tag\\=value field\\,key=1");
        assert_eq!(p.measurement, "my meas,ure");
        assert_eq!(p.tags, [("tag key".into(), "tag=value".into())]);
        assert_eq!(p.fields[0].0, "field,key");
        assert!(parse(b"# a comment", &L).unwrap().is_none());
        assert!(parse(b"   ", &L).unwrap().is_none());
        assert_eq!(one("m  f=1   5 ").timestamp, Some(5));
    }

    #[test]
    fn readings_are_named_by_the_default_rule() {
        let r = one("cpu,host=gw1 usage=3,label=\"x\",ok=f").readings();
        assert_eq!(
            r,
            [
                NamedReading {
                    sensor: "cpu/gw1/usage".into(),
                    value: 3.0
                },
                NamedReading {
                    sensor: "cpu/gw1/ok".into(),
                    value: 0.0
                },
            ]
        );
        let r = one("disk,path=/var/lib,host=a\\ b free=1").readings();
        assert_eq!(r[0].sensor, "disk/a_b//var/lib/free");
    }

    #[test]
    fn bad_lines_have_their_reason() {
        let cases: [(&[u8], LineError); 14] = [
            (b"m", LineError::NoFields),
            (b"m ", LineError::NoFields),
            (b",t=1 f=1", LineError::NoMeasurement),
            (b"m,t f=1", LineError::BadTag),
            (b"m,t= f=1", LineError::BadTag),
            (b"m f", LineError::BadField),
            (b"m =1", LineError::BadField),
            (b"m f=\"open", LineError::UnclosedQuote),
            (b"m f=1 12x", LineError::BadTimestamp),
            (b"m f=1 1 2", LineError::Trailing),
            (b"m f=\xff", LineError::NotUtf8),
            (b"m f=inf", LineError::BadValue { field: 1 }),
            (b"m g=1,f=1.5i", LineError::BadValue { field: 2 }),
            (b"m f=+1", LineError::BadValue { field: 1 }),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse(line, &L),
                Err(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let many_tags: String = format!(
            "m,{} f=1",
            (0..33)
                .map(|i| format!("t{i}=v"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            parse(many_tags.as_bytes(), &L),
            Err(LineError::OverCap {
                what: "tags",
                max: 32
            })
        );
        let long_key = format!("m {}=1", "k".repeat(129));
        assert_eq!(
            parse(long_key.as_bytes(), &L),
            Err(LineError::OverCap {
                what: "field key",
                max: 128
            })
        );
        let long_str = format!("m f=\"{}\"", "s".repeat(1025));
        assert_eq!(
            parse(long_str.as_bytes(), &L),
            Err(LineError::OverCap {
                what: "string value",
                max: 1024
            })
        );
    }

    #[test]
    fn precisions_convert_to_microseconds() {
        assert_eq!(Precision::parse("ns").unwrap().to_micros(1_500), Ok(1));
        assert_eq!(Precision::parse("ms").unwrap().to_micros(2), Ok(2_000));
        assert_eq!(Precision::parse("s").unwrap().to_micros(3), Ok(3_000_000));
        assert_eq!(
            Precision::parse("h").unwrap().to_micros(1),
            Ok(3_600_000_000)
        );
        assert_eq!(
            Precision::Seconds.to_micros(i64::MAX),
            Err(LineError::BadTimestamp)
        );
        assert!(Precision::parse("d").is_none());
    }
}
