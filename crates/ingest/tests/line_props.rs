//! Properties of the line protocol parser: what is written with the
//! specification's escapes parses back to the same point; a body cut into
//! chunks anywhere gives the same lines as whole; arbitrary bytes give a
//! point or an error, never a panic; a line over its cap is refused
//! whatever the chunking.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

use std::borrow::Cow;
use std::fmt::Write as _;

use proptest::prelude::*;
use sensegate_ingest::line::{BadLine, Limits, LineError, Point, Splitter, Value, parse};

/// Writes a key or tag value with `,`, `=` and space escaped.
fn escape(s: &str, stop: &[char]) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if stop.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn write(p: &Point<'_>) -> String {
    let mut line = escape(&p.measurement, &[',', ' ']);
    for (k, v) in &p.tags {
        line.push(',');
        line.push_str(&escape(k, &[',', '=', ' ']));
        line.push('=');
        line.push_str(&escape(v, &[',', '=', ' ']));
    }
    line.push(' ');
    for (i, (k, v)) in p.fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&escape(k, &[',', '=', ' ']));
        line.push('=');
        match v {
            Value::Float(f) => {
                let _ = write!(line, "{f:?}");
            }
            Value::Int(n) => {
                let _ = write!(line, "{n}i");
            }
            Value::UInt(n) => {
                let _ = write!(line, "{n}u");
            }
            Value::Bool(b) => line.push_str(if *b { "true" } else { "F" }),
            Value::Str(s) => {
                line.push('"');
                line.push_str(&s.replace('\\', "\\\\").replace('"', "\\\""));
                line.push('"');
            }
        }
    }
    if let Some(t) = p.timestamp {
        let _ = write!(line, " {t}");
    }
    line
}

/// Text for keys and values: printable, with the characters that need
/// escaping, no backslash at the end (a trailing `\` before a stop would
/// read as an escape), not starting with `#` or a space.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9_ ,=.:/-]{0,12}[a-zA-Z0-9_]?"
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        any::<i64>().prop_map(Value::Int),
        any::<u64>().prop_map(Value::UInt),
        any::<bool>().prop_map(Value::Bool),
        "[ -~]{0,20}".prop_map(Value::Str),
    ]
}

fn point() -> impl Strategy<Value = Point<'static>> {
    (
        text(),
        proptest::collection::btree_map(text(), text(), 0..5),
        proptest::collection::vec((text(), value()), 1..6),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(|(m, tags, fields, timestamp)| Point {
            measurement: Cow::Owned(m),
            tags: tags
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)))
                .collect(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k), v))
                .collect(),
            timestamp,
        })
}

fn lines_of(body: &[u8], cuts: &[usize], limits: Limits) -> Result<Vec<(usize, Vec<u8>)>, BadLine> {
    let mut out = Vec::new();
    let mut each = |n: usize, line: &[u8]| {
        out.push((n, line.to_vec()));
        Ok(())
    };
    let mut splitter = Splitter::new(limits);
    let mut at = 0;
    for &c in cuts {
        let c = c.min(body.len()).max(at);
        splitter.feed(&body[at..c], &mut each)?;
        at = c;
    }
    splitter.feed(&body[at..], &mut each)?;
    splitter.finish(&mut each)?;
    Ok(out)
}

proptest! {
    #[test]
    fn written_points_parse_back(p in point()) {
        let line = write(&p);
        let got = parse(line.as_bytes(), &Limits::DEFAULT).unwrap().unwrap();
        prop_assert_eq!(&got.measurement, &p.measurement, "{}", line);
        prop_assert_eq!(&got.tags, &p.tags, "{}", line);
        prop_assert_eq!(&got.timestamp, &p.timestamp, "{}", line);
        prop_assert_eq!(got.fields.len(), p.fields.len());
        for ((gk, gv), (k, v)) in got.fields.iter().zip(&p.fields) {
            prop_assert_eq!(gk, k, "{}", line);
            match (gv, v) {
                (Value::Float(a), Value::Float(b)) => prop_assert_eq!(a.to_bits(), b.to_bits(), "{}", line),
                (a, b) => prop_assert_eq!(a, b, "{}", line),
            }
        }
    }

    #[test]
    fn any_chunking_gives_the_same_lines(
        body in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..400),
        mut cuts in proptest::collection::vec(0usize..400, 0..8),
    ) {
        cuts.sort_unstable();
        let limits = Limits { max_line_bytes: 64, max_lines: 20, ..Limits::DEFAULT };
        let whole = lines_of(&body, &[], limits);
        let cut = lines_of(&body, &cuts, limits);
        prop_assert_eq!(whole, cut);
    }

    #[test]
    fn arbitrary_lines_never_panic(line in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&line, &Limits::DEFAULT);
    }

    #[test]
    fn a_line_over_its_cap_is_refused_however_it_arrives(
        len in 65usize..300,
        mut cuts in proptest::collection::vec(0usize..300, 0..8),
    ) {
        cuts.sort_unstable();
        let limits = Limits { max_line_bytes: 64, ..Limits::DEFAULT };
        let mut body = b"m f=1\n".to_vec();
        body.extend(std::iter::repeat_n(b'a', len));
        body.extend_from_slice(b"\nm f=2\n");
        let got = lines_of(&body, &cuts, limits);
        prop_assert_eq!(got, Err(BadLine { line: 2, error: LineError::TooLong { max: 64 } }));
    }
}

#[test]
fn too_many_lines_is_refused_at_the_first_one_past_the_cap() {
    let limits = Limits {
        max_lines: 3,
        ..Limits::DEFAULT
    };
    let got = lines_of(b"a f=1\n\n# c\nb f=2\n", &[], limits);
    assert_eq!(
        got,
        Err(BadLine {
            line: 4,
            error: LineError::TooManyLines { max: 3 }
        })
    );
}
