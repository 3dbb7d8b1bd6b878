//! Tokens: how they are made, how they look, and how one is checked.
//!
//! A token is `sgt_<id>_<secret>`: `id` is 8 random bytes in hex (public: it
//! names the token in listings and revocations), `secret` is 32 random bytes
//! (256 bits) in hex. The whole text is shown once, at creation. The store
//! keeps only `SHA-256(token text)`: the secret has 256 bits of entropy, so a
//! fast hash is enough; no one can brute-force it, and a stolen store file
//! reveals no token.
//!
//! Checking a presented token takes the same steps whether its id is known or
//! not: an unknown id is compared against a dummy hash, and the outcome is
//! combined with `subtle`'s constant-time operations, so timing does not tell
//! an attacker which ids exist.
//!
//! Secrets never reach a log: [`SecretToken`]'s `Debug` is redacted and it has
//! no `Display`.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Prefix of every token, so leaked tokens are easy to scan for.
pub const PREFIX: &str = "sgt_";
/// Hex characters in a token id.
pub const ID_HEX_LEN: usize = 16;
/// Hex characters in a token secret.
pub const SECRET_HEX_LEN: usize = 64;
/// Length of a whole token.
pub const TOKEN_LEN: usize = PREFIX.len() + ID_HEX_LEN + 1 + SECRET_HEX_LEN;

/// A whole token as shown once to its owner. Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken(String);

impl SecretToken {
    /// The token text, to show once or to send in a hello.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Wraps a token read from a file or the environment.
    #[must_use]
    pub fn from_text(text: &str) -> Self {
        Self(text.trim().to_owned())
    }
}

impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

/// SHA-256 of a token's text: what the store keeps.
pub type TokenHash = [u8; 32];

/// A fresh token: its public id, the whole secret text, and its hash.
#[derive(Debug)]
pub struct NewToken {
    /// The public id.
    pub id: String,
    /// The whole token, to be shown once.
    pub secret: SecretToken,
    /// What the store keeps.
    pub hash: TokenHash,
}

/// Failure of the system random source.
#[derive(Debug, thiserror::Error)]
#[error("the system random source failed")]
pub struct RandomError;

/// Makes a new token from the operating system's random source.
///
/// # Errors
/// [`RandomError`] when the random source fails (the caller must not fall
/// back to anything weaker).
pub fn generate() -> Result<NewToken, RandomError> {
    let mut id = [0u8; ID_HEX_LEN / 2];
    let mut secret = [0u8; SECRET_HEX_LEN / 2];
    getrandom::fill(&mut id).map_err(|_| RandomError)?;
    getrandom::fill(&mut secret).map_err(|_| RandomError)?;
    let id = hex(&id);
    let text = format!("{PREFIX}{id}_{}", hex(&secret));
    let hash = hash(&text);
    Ok(NewToken {
        id,
        secret: SecretToken(text),
        hash,
    })
}

/// SHA-256 of a token's text.
#[must_use]
pub fn hash(text: &str) -> TokenHash {
    Sha256::digest(text.as_bytes()).into()
}

/// The id part of a well-formed token, or `None` when the text is not shaped
/// like a token. The shape is public, so rejecting it early leaks nothing.
#[must_use]
pub fn parse_id(text: &str) -> Option<&str> {
    if text.len() != TOKEN_LEN || !text.is_ascii() {
        return None;
    }
    let rest = text.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_at_checked(ID_HEX_LEN)?;
    let secret = secret.strip_prefix('_')?;
    let is_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (is_hex(id) && secret.len() == SECRET_HEX_LEN && is_hex(secret)).then_some(id)
}

/// Constant-time comparison of a presented token with a stored hash.
#[must_use]
pub fn hash_matches(text: &str, stored: &TokenHash) -> Choice {
    hash(text).ct_eq(stored)
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.secret.expose().len(), TOKEN_LEN);
        assert_eq!(parse_id(a.secret.expose()), Some(a.id.as_str()));
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.id, b.id);
        assert_eq!(hash(a.secret.expose()), a.hash);
        assert!(bool::from(hash_matches(a.secret.expose(), &a.hash)));
        assert!(!bool::from(hash_matches(b.secret.expose(), &a.hash)));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = generate().unwrap();
        let shown = format!("{t:?}");
        let secret_part = &t.secret.expose()[PREFIX.len() + ID_HEX_LEN + 1..];
        assert!(!shown.contains(secret_part), "{shown}");
    }

    #[test]
    fn malformed_tokens_have_no_id() {
        let t = generate().unwrap();
        let text = t.secret.expose();
        assert!(parse_id(&text[1..]).is_none());
        assert!(parse_id(&text.replace("sgt_", "sgx_")).is_none());
        assert!(parse_id(&text.to_uppercase()).is_none());
        assert!(parse_id("").is_none());
        let mut wrong_sep = text.to_owned();
        wrong_sep.replace_range(PREFIX.len() + ID_HEX_LEN..=PREFIX.len() + ID_HEX_LEN, "-");
        assert!(parse_id(&wrong_sep).is_none());
        let multibyte = format!("{}é", &text[..TOKEN_LEN - 2]);
        assert!(parse_id(&multibyte).is_none());
    }
}
