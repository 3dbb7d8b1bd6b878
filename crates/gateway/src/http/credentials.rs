//! Where a request's token is: the `Authorization` header only, in the
//! schemes the clients of each route send, and never the URL.
//!
//! - `Bearer <token>`: every route (our clients, the dashboard).
//! - `Token <token>`: InfluxDB 2.x clients and Telegraf's
//!   `outputs.influxdb_v2` (accepted on every route: it is the same token).
//! - `Basic base64(user:token)`: InfluxDB 1.x clients and Telegraf's
//!   `outputs.influxdb`, the token as the password; the user name is
//!   ignored. Only on the InfluxDB write route.
//!
//! A token in the query string (`?p=`, `?token=`, `?access_token=`, as
//! InfluxDB 1.x clients, and some scripts, put it) is refused on every
//! route before anything else: URLs end up in proxy and server logs, shell
//! history and browser history. The refusal says to use the header; the
//! value is never read, logged or echoed.

use axum::http::{HeaderMap, header};
use base64::Engine as _;

/// Query-string keys that carry a secret in the clients that use them.
const SECRET_KEYS: [&str; 3] = ["p", "token", "access_token"];

/// Whether the query string carries a token (by its key; the value is
/// never looked at).
#[must_use]
pub fn token_in_query(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, _)| SECRET_KEYS.contains(&k.as_ref()))
    })
}

/// Which schemes a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schemes {
    /// `Bearer` and `Token`.
    TokenOnly,
    /// `Bearer`, `Token` and `Basic` (the InfluxDB 1.x write route).
    WithBasic,
}

/// The token of a request: exactly one `Authorization` header in a scheme
/// the route takes, at most `max` bytes; `None` otherwise (none, more than
/// one, which would count is ambiguous).
#[must_use]
pub fn token(headers: &HeaderMap, schemes: Schemes, max: usize) -> Option<String> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let (scheme, rest) = value.to_str().ok()?.split_once(' ')?;
    let rest = rest.trim();
    let token = if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        rest.to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") && schemes == Schemes::WithBasic {
        // user:password, base64; the password is the token. Decoded only
        // within the cap (base64 is 4/3 of what it holds, plus the user).
        if rest.len() > (max + 256) * 4 / 3 + 4 {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        password.to_owned()
    } else {
        return None;
    };
    (!token.is_empty() && token.len() <= max).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn each_scheme_gives_the_token_where_the_route_takes_it() {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("telegraf:sg_secret")
        );
        for (value, schemes, want) in [
            ("Bearer sg_secret", Schemes::TokenOnly, Some("sg_secret")),
            ("Token sg_secret", Schemes::TokenOnly, Some("sg_secret")),
            ("token  sg_secret ", Schemes::TokenOnly, Some("sg_secret")),
            (basic.as_str(), Schemes::WithBasic, Some("sg_secret")),
            (basic.as_str(), Schemes::TokenOnly, None),
            ("Basic !!!", Schemes::WithBasic, None),
            ("Digest x", Schemes::WithBasic, None),
            ("Bearer", Schemes::TokenOnly, None),
            ("Bearer  ", Schemes::TokenOnly, None),
        ] {
            assert_eq!(
                token(&headers(&[value]), schemes, 64).as_deref(),
                want,
                "{value}"
            );
        }
        // None, two, or over the cap.
        assert_eq!(token(&headers(&[]), Schemes::TokenOnly, 64), None);
        assert_eq!(
            token(&headers(&["Token a", "Token b"]), Schemes::TokenOnly, 64),
            None
        );
        assert_eq!(
            token(&headers(&["Token sg_secret"]), Schemes::TokenOnly, 8),
            None
        );
        let long = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("u:{}", "x".repeat(4096)))
        );
        assert_eq!(token(&headers(&[&long]), Schemes::WithBasic, 64), None);
    }

    #[test]
    fn a_token_in_the_query_string_is_seen_by_its_key() {
        for q in [
            "p=x",
            "db=a&p=x",
            "token=x",
            "access_token=",
            "%70=x",
            "u=a&p",
        ] {
            assert!(token_in_query(Some(q)), "{q}");
        }
        for q in [
            "db=a&u=telegraf",
            "precision=s",
            "pattern=p",
            "bucket=token",
        ] {
            assert!(!token_in_query(Some(q)), "{q}");
        }
        assert!(!token_in_query(None));
    }
}
