//! Names parsed once. A [`Name`] (a token's name; sensor names are
//! `Arc<str>` in the catalog) has passed the name rule
//! ([`sensegate_proto::envelope::check_name`]) with the configured limits,
//! so whatever takes one does not check it again.

use sensegate_proto::MessageLimits;
use sensegate_proto::envelope::{MessageError, check_name};

/// A name that passed the name rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name(String);

impl Name {
    /// Parses untrusted text (an HTTP body, a config value) by the name
    /// rule with the configured limits.
    ///
    /// # Errors
    /// The rule's error, naming `field`.
    pub fn parse(
        field: &'static str,
        text: &str,
        limits: &MessageLimits,
    ) -> Result<Self, MessageError> {
        check_name(field, text, limits)?;
        Ok(Self(text.to_owned()))
    }

    /// A name from a field the envelope decoder has already checked by the
    /// same rule and limits (`decode_envelope` refuses the whole frame
    /// otherwise): the native protocol's requests arrive parsed.
    #[must_use]
    pub const fn decoded(text: String) -> Self {
        Self(text)
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_by_the_rule_and_the_configured_cap() {
        let narrow = MessageLimits {
            max_name_bytes: 4,
            ..MessageLimits::DEFAULT
        };
        assert_eq!(Name::parse("n", "abcd", &narrow).unwrap().as_str(), "abcd");
        assert!(Name::parse("n", "abcde", &narrow).is_err());
        assert!(Name::parse("n", "a b", &MessageLimits::DEFAULT).is_err());
        assert!(Name::parse("n", "", &MessageLimits::DEFAULT).is_err());
    }
}
