//! Sensor-name patterns: `*` matches any run of characters (including none),
//! `?` matches exactly one; everything else matches itself.
//!
//! Patterns and names are both capped in length by the wire limits, and the
//! matcher runs in O(len(pattern) x len(name)) at worst with no recursion and
//! no allocation, so a hostile pattern cannot make matching expensive.

/// A pattern, checked once and matched many times.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern(String);

impl Pattern {
    /// A pattern from its text. The caller has already checked the text
    /// against the wire rules (length, character set).
    #[must_use]
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The pattern that matches every name.
    #[must_use]
    pub fn any() -> Self {
        Self("*".to_owned())
    }

    /// The pattern's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` matches.
    #[must_use]
    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Iterative wildcard match with single-star backtracking: linear in the
/// usual case, quadratic at worst, never recursive.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        Pattern::new(p).matches(n)
    }

    #[test]
    fn literals_and_wildcards() {
        assert!(m("room/temp", "room/temp"));
        assert!(!m("room/temp", "room/temp2"));
        assert!(m("*", "anything"));
        assert!(m("*", ""));
        assert!(m("room/*", "room/temp"));
        assert!(m("room/*", "room/"));
        assert!(!m("room/*", "hall/temp"));
        assert!(m("*temp", "room/temp"));
        assert!(m("r?om/*", "room/x"));
        assert!(!m("r?om/*", "rom/x"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("**", "x"));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let name = "a".repeat(128);
        let pattern = format!("{}b", "*a".repeat(100));
        // An exponential (recursive) matcher would not finish this; the
        // iterative one does it in about len(pattern) x len(name) steps.
        for _ in 0..100 {
            assert!(!m(&pattern, &name));
        }
    }
}
