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
    /// A pattern from text that is not yet trusted: checked against the
    /// pattern rule ([`sensegate_proto::envelope::check_pattern`]) with the
    /// configured limits.
    ///
    /// # Errors
    /// The rule's error, naming `field`.
    pub fn parse(
        field: &'static str,
        text: &str,
        limits: &sensegate_proto::MessageLimits,
    ) -> Result<Self, sensegate_proto::envelope::MessageError> {
        sensegate_proto::envelope::check_pattern(field, text, limits)?;
        Ok(Self(text.to_owned()))
    }

    /// A pattern from text already checked against the pattern rule (a
    /// decoded envelope's field, or a constant).
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

    /// Whether every name `inner` matches is one this pattern matches: a
    /// conservative test (it may say no to some patterns that are in fact
    /// contained, never yes to one that is not). It says yes when
    /// - this pattern is only stars (it matches everything);
    /// - `inner` has no wildcard and this pattern matches it as a name;
    /// - both are the same text;
    /// - this pattern is a literal prefix followed by one `*` (`site-a/*`)
    ///   and `inner`'s literal start, up to its first wildcard, begins with
    ///   that prefix (`site-a/room-?/*`).
    ///
    /// Anything else is refused: `a*b` does not cover `a*xb` here, though it
    /// does in fact. This is what keeps a scoped admin inside its scope.
    #[must_use]
    pub fn covers(&self, inner: &Self) -> bool {
        let outer = self.0.as_bytes();
        let inner_text = inner.0.as_bytes();
        let is_wild = |c: &u8| *c == b'*' || *c == b'?';
        if outer.iter().all(|&c| c == b'*') {
            return true;
        }
        let Some(inner_wild) = inner_text.iter().position(is_wild) else {
            return self.matches(&inner.0);
        };
        if outer == inner_text {
            return true;
        }
        match outer.split_last() {
            Some((b'*', prefix)) if !prefix.iter().any(is_wild) => {
                inner_text[..inner_wild].starts_with(prefix)
            }
            _ => false,
        }
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

    fn covers(outer: &str, inner: &str) -> bool {
        Pattern::new(outer).covers(&Pattern::new(inner))
    }

    #[test]
    fn covers_says_yes_only_for_contained_patterns() {
        for (outer, inner) in [
            ("*", "*"),
            ("*", "a/*"),
            ("**", "?"),
            ("site-a/*", "site-a/*"),
            ("site-a/*", "site-a/room/*"),
            ("site-a/*", "site-a/r?om/*"),
            ("site-a/*", "site-a/t"),
            ("site-a/*", "site-a/"),
            ("site-a/t", "site-a/t"),
            ("a*b", "a*b"),
            ("a*b", "axb"),
            ("r?om", "room"),
        ] {
            assert!(covers(outer, inner), "{outer} should cover {inner}");
        }
        for (outer, inner) in [
            ("site-a/*", "*"),
            ("site-a/*", "site-*"),
            ("site-a/*", "site-a*"),
            ("site-a/*", "?ite-a/*"),
            ("site-a/*", "site-b/t"),
            ("site-a/t", "site-a/*"),
            ("site-a/t", "site-a/?"),
            ("a*b", "a*"),
            ("a*b", "a*xb"),
            ("r?om", "r?o?"),
            ("room", "r??m"),
        ] {
            assert!(!covers(outer, inner), "{outer} must not cover {inner}");
        }
    }

    #[test]
    fn what_covers_says_holds_for_every_name_tried() {
        // Soundness on a small alphabet: if covers(o, i), every name i
        // matches, o matches.
        let patterns = [
            "*", "a*", "ab*", "a?", "a?*", "?b", "ab", "a*b", "b*", "**", "a",
        ];
        let names = ["", "a", "b", "ab", "ba", "abb", "aab", "abab", "bb", "aa"];
        for o in patterns {
            for i in patterns {
                if covers(o, i) {
                    for n in names {
                        assert!(!m(i, n) || m(o, n), "{o} covers {i} but {n} breaks it");
                    }
                }
            }
        }
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
