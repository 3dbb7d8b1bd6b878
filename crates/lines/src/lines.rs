//! Splitting a serial byte stream into lines, and the `name=value` line
//! protocol. Both without I/O.
//!
//! [`LineSplitter`] holds at most `max` bytes: a line longer than that is
//! dropped whole (up to its newline) and counted, never buffered. Lines end
//! at `\n`; a `\r` before it is removed.

/// Splits bytes into lines of at most `max` bytes.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    /// True while the rest of an overlong line is being skipped.
    skipping: bool,
    /// Lines dropped for length.
    pub overlong: u64,
}

impl LineSplitter {
    /// A splitter for lines of at most `max` bytes.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::with_capacity(max.min(256)),
            max,
            skipping: false,
            overlong: 0,
        }
    }

    /// Feeds `bytes` and calls `line` with each complete line.
    pub fn feed(&mut self, bytes: &[u8], mut line: impl FnMut(&[u8])) {
        for &b in bytes {
            if b == b'\n' {
                if self.skipping {
                    self.skipping = false;
                } else {
                    let end = if self.buf.last() == Some(&b'\r') {
                        self.buf.len() - 1
                    } else {
                        self.buf.len()
                    };
                    line(&self.buf[..end]);
                }
                self.buf.clear();
            } else if !self.skipping {
                // One byte over the cap is allowed when it is the `\r` of a
                // CRLF ending, which is stripped.
                let cr_after_full = b == b'\r' && self.buf.len() == self.max;
                if self.buf.len() >= self.max && !cr_after_full {
                    self.buf.clear();
                    self.skipping = true;
                    self.overlong += 1;
                } else {
                    self.buf.push(b);
                }
            }
        }
    }

    /// Forgets a partial line (after the device went away).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.skipping = false;
    }
}

/// Why a `name=value` line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// No `=`.
    #[error("no '=' in the line")]
    NoEquals,
    /// The name is empty, too long or has other bytes than `[A-Za-z0-9._:/-]`.
    #[error("the name is not a valid sensor name")]
    Name,
    /// The value is not a finite number.
    #[error("the value is not a finite number")]
    Value,
}

/// Parses `name=value` (spaces around either side allowed); the name must
/// fit `max_name` bytes.
///
/// # Errors
/// [`LineError`].
pub fn parse_name_value(line: &[u8], max_name: usize) -> Result<(&str, f64), LineError> {
    let text = std::str::from_utf8(line).map_err(|_| LineError::Name)?;
    let (name, value) = text.split_once('=').ok_or(LineError::NoEquals)?;
    let name = name.trim();
    if !sensegate_proto::envelope::is_name(name, max_name) {
        return Err(LineError::Name);
    }
    let value: f64 = value.trim().parse().map_err(|_| LineError::Value)?;
    if !value.is_finite() {
        return Err(LineError::Value);
    }
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> (Vec<String>, u64) {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l| out.push(String::from_utf8_lossy(l).into_owned()));
        }
        (out, s.overlong)
    }

    #[test]
    fn lines_split_across_chunks_and_crlf() {
        let (lines, overlong) = split(16, &[b"a=1\r\nb=", b"2\n\nc", b"=3\n"]);
        assert_eq!(lines, ["a=1", "b=2", "", "c=3"]);
        assert_eq!(overlong, 0);
    }

    #[test]
    fn an_overlong_line_is_dropped_whole_and_counted() {
        let long = vec![b'x'; 100];
        let (lines, overlong) = split(8, &[b"ok=1\n", &long, b"tail\nafter=2\n"]);
        assert_eq!(lines, ["ok=1", "after=2"]);
        assert_eq!(overlong, 1);
        // Exactly at the cap is fine, with either ending.
        let (lines, overlong) = split(4, &[b"abcd\n", b"efgh\r\n"]);
        assert_eq!(
            (lines, overlong),
            (vec!["abcd".to_owned(), "efgh".to_owned()], 0)
        );
        // A carriage return inside does not get the extra byte.
        let (lines, overlong) = split(4, &[b"abcd\rx\nok\n"]);
        assert_eq!((lines, overlong), (vec!["ok".to_owned()], 1));
    }

    #[test]
    fn name_value_lines() {
        assert_eq!(parse_name_value(b"temp=21.5", 64), Ok(("temp", 21.5)));
        assert_eq!(parse_name_value(b" rh = 40 ", 64), Ok(("rh", 40.0)));
        assert_eq!(parse_name_value(b"temp 21", 64), Err(LineError::NoEquals));
        assert_eq!(parse_name_value(b"=1", 64), Err(LineError::Name));
        assert_eq!(parse_name_value(b"a b=1", 64), Err(LineError::Name));
        assert_eq!(parse_name_value(b"toolong=1", 4), Err(LineError::Name));
        assert_eq!(parse_name_value(b"x=nan", 64), Err(LineError::Value));
        assert_eq!(parse_name_value(b"x=inf", 64), Err(LineError::Value));
        assert_eq!(parse_name_value(b"x=", 64), Err(LineError::Value));
        assert_eq!(parse_name_value(b"\xff=1", 64), Err(LineError::Name));
    }
}
