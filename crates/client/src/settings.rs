//! Client settings: the server address, the token, and TLS, from a client
//! config file, flags and the environment.
//!
//! The token comes from a file (`token_file`, or `--token-file`) or the
//! `SENSEGATE_TOKEN` environment variable, never from a command-line
//! argument. The config file is found at `SENSEGATE_CLIENT_CONFIG`, else at
//! `client.toml` in the default data directory, where `sensegate demo`
//! writes one. Files are read with a size cap; unknown keys are errors.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::pin::{TlsOptions, parse_fingerprint};

/// Environment variable naming the client config file.
pub const CONFIG_ENV: &str = "SENSEGATE_CLIENT_CONFIG";
/// Environment variable holding a token.
pub const TOKEN_ENV: &str = "SENSEGATE_TOKEN";
/// Largest client config file read.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;
/// Largest token file read.
const MAX_TOKEN_BYTES: u64 = 1024;

/// A secret that never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    #[must_use]
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself; only to send it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A file is over its cap.
    #[error("{path}: file too large")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The config file is not valid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (with key and line for TOML errors).
        message: String,
    },
    /// No token anywhere.
    #[error("no token: set token_file in the client config, pass --token-file, or set {TOKEN_ENV}")]
    NoToken,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientConfig {
    address: Option<String>,
    token_file: Option<PathBuf>,
    tls: Option<bool>,
    fingerprint: Option<String>,
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
}

/// Settings from a client config file.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    /// `host:port`.
    pub address: Option<String>,
    /// Token file (relative paths are resolved against the config file).
    pub token_file: Option<PathBuf>,
    /// TLS, when on.
    pub tls: Option<TlsOptions>,
}

fn read_capped(path: &Path, max: u64) -> Result<String, SettingsError> {
    let io = |source| SettingsError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > max {
        return Err(SettingsError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

impl ClientSettings {
    /// Reads a client config file.
    ///
    /// # Errors
    /// [`SettingsError`] for an unreadable or invalid file.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = read_capped(path, MAX_CONFIG_BYTES)?;
        let invalid = |message: String| SettingsError::Invalid {
            path: path.to_owned(),
            message,
        };
        let raw: RawClientConfig =
            toml::from_str(&text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let pin = raw
            .fingerprint
            .as_deref()
            .map(parse_fingerprint)
            .transpose()
            .map_err(|m| invalid(format!("`fingerprint` {m}")))?;
        let tls_on = raw.tls.unwrap_or(pin.is_some() || raw.ca_file.is_some());
        Ok(Self {
            address: raw.address,
            token_file: raw.token_file.map(|p| base.join(p)),
            tls: tls_on.then(|| TlsOptions {
                pin,
                ca_file: raw.ca_file.map(|p| base.join(p)),
                server_name: raw.server_name,
            }),
        })
    }

    /// The default client config path: `SENSEGATE_CLIENT_CONFIG`, else
    /// `client.toml` in [`default_data_dir`].
    #[must_use]
    pub fn default_path() -> Option<PathBuf> {
        match std::env::var_os(CONFIG_ENV) {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => default_data_dir().map(|d| d.join("client.toml")),
        }
    }
}

/// The per-user data directory: `$XDG_DATA_HOME/sensegate`, else
/// `$HOME/.local/share/sensegate`. Only absolute paths are taken from the
/// environment.
#[must_use]
pub fn default_data_dir() -> Option<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_DATA_HOME")
        .map(|d| d.join("sensegate"))
        .or_else(|| absolute("HOME").map(|h| h.join(".local/share/sensegate")))
}

/// Reads a token from a file: the first line, trimmed, capped.
///
/// # Errors
/// [`SettingsError`] for an unreadable or empty file.
pub fn read_token_file(path: &Path) -> Result<Secret, SettingsError> {
    let text = read_capped(path, MAX_TOKEN_BYTES)?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() || token.chars().any(char::is_control) {
        return Err(SettingsError::Invalid {
            path: path.to_owned(),
            message: "no token in the file".into(),
        });
    }
    Ok(Secret::new(token))
}

/// The token: `--token-file` first, then `SENSEGATE_TOKEN`, then the config
/// file's `token_file`.
///
/// # Errors
/// [`SettingsError::NoToken`] when none is set, or the file's error.
pub fn resolve_token(
    flag_file: Option<&Path>,
    settings: &ClientSettings,
) -> Result<Secret, SettingsError> {
    if let Some(path) = flag_file {
        return read_token_file(path);
    }
    if let Some(t) = std::env::var_os(TOKEN_ENV).and_then(|v| v.into_string().ok()) {
        let t = t.trim();
        if !t.is_empty() {
            return Ok(Secret::new(t));
        }
    }
    match &settings.token_file {
        Some(path) => read_token_file(path),
        None => Err(SettingsError::NoToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demo_style_config_resolves_relative_paths_and_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("client.toml");
        let pin = ["0A"; 32].join(":");
        std::fs::write(
            &cfg,
            format!("address = \"127.0.0.1:7420\"\ntoken_file = \"admin.token\"\ntls = true\nfingerprint = \"{pin}\"\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("admin.token"), "sgt_x\n").unwrap();
        let s = ClientSettings::load(&cfg).unwrap();
        assert_eq!(s.address.as_deref(), Some("127.0.0.1:7420"));
        assert_eq!(
            s.token_file.as_deref(),
            Some(dir.path().join("admin.token").as_path())
        );
        assert_eq!(s.tls.unwrap().pin, Some([0x0A; 32]));
        assert_eq!(
            read_token_file(&dir.path().join("admin.token"))
                .unwrap()
                .expose(),
            "sgt_x"
        );
    }

    #[test]
    fn unknown_keys_and_bad_pins_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("client.toml");
        std::fs::write(&cfg, "adress = \"x\"\n").unwrap();
        let e = ClientSettings::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("adress") && e.contains("line 1"), "{e}");
        std::fs::write(&cfg, "fingerprint = \"AB\"\n").unwrap();
        let e = ClientSettings::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("fingerprint"), "{e}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        assert_eq!(
            format!("{:?}", Secret::new("sgt_abc")),
            "Secret(<redacted>)"
        );
    }
}
