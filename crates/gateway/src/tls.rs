//! TLS for the native listener: TLS 1.3 only, rustls with the `ring`
//! provider, and the demo's self-signed certificate.
//!
//! Clients pin the certificate by the SHA-256 of its DER encoding, which
//! [`fingerprint`] prints in the usual colon-separated hex.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

use crate::file::{CappedReadError, read_capped_bytes};

/// Largest certificate or key file read.
pub const MAX_PEM_BYTES: u64 = 256 * 1024;

/// TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A file is over [`MAX_PEM_BYTES`].
    #[error("{path}: over the cap of {MAX_PEM_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("{path}: no {what} found in PEM")]
    Pem {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
    },
    /// rustls refused the pair.
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The certificate could not be generated.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    read_capped_bytes(path, MAX_PEM_BYTES).map_err(|e| match e {
        CappedReadError::Io(source) => TlsError::Io {
            path: path.to_owned(),
            source,
        },
        CappedReadError::TooLarge { .. } => TlsError::TooLarge {
            path: path.to_owned(),
        },
    })
}

/// The certificate chain in a PEM file.
///
/// # Errors
/// [`TlsError`] when the file cannot be read or holds no certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The ALPN protocol of the native listener.
pub const ALPN_NATIVE: &[u8] = b"sensegate/1";
/// The ALPN protocol of the HTTP listener.
pub const ALPN_HTTP: &[u8] = b"http/1.1";
/// The ALPN protocol of the MQTT listener (IANA's `mqtt`; clients that
/// offer no ALPN are served too).
pub const ALPN_MQTT: &[u8] = b"mqtt";

/// A TLS 1.3 server configuration from PEM files that speaks `alpn`: a
/// client that offers other protocols only is refused in the handshake
/// (`no_application_protocol`), so a browser cannot be pointed at the native
/// port nor a native client at the HTTP one (cross-protocol confusion); a
/// client that offers none is served.
///
/// # Errors
/// [`TlsError`] for unreadable files or a pair rustls refuses.
pub fn server_config(
    cert: &Path,
    key: &Path,
    alpn: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certs(cert)?;
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Pem {
        path: key.to_owned(),
        what: "private key",
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)?;
    let mut config = config;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// The SHA-256 fingerprint of a DER certificate, as `AB:CD:...`.
#[must_use]
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Makes a self-signed certificate for `localhost` and `127.0.0.1` in `dir`
/// (`cert.pem`, and `key.pem` with mode 0600) unless both exist; returns
/// their paths.
///
/// # Errors
/// [`TlsError`] when generation or writing fails.
pub fn ensure_self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.is_file() && key_path.is_file() {
        return Ok((cert_path, key_path));
    }
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    crate::file::write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())
        .map_err(io(&key_path))?;
    std::fs::write(&cert_path, certified.cert.pem()).map_err(io(&cert_path))?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_loads_with_a_stable_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_self_signed(dir.path()).unwrap();
        server_config(&cert, &key, ALPN_NATIVE).unwrap();
        let certs = load_certs(&cert).unwrap();
        let fp = fingerprint(&certs[0]);
        assert_eq!(fp.len(), 32 * 3 - 1);
        // A second call reuses the files.
        ensure_self_signed(dir.path()).unwrap();
        assert_eq!(fingerprint(&load_certs(&cert).unwrap()[0]), fp);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&key).unwrap().permissions().mode() & 0o077,
                0
            );
        }
    }

    #[test]
    fn files_without_pem_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, b"not pem").unwrap();
        let e = load_certs(&junk).unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
    }
}
