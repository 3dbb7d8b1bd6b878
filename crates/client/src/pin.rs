//! TLS for the client: TLS 1.3 only, with the server certificate either
//! pinned by its SHA-256 fingerprint (the demo's self-signed certificate) or
//! checked against a CA file.
//!
//! A pinned certificate is accepted only if its DER hash equals the pin;
//! the handshake signature is still verified with the certificate's key, so
//! a peer must hold the private key as well.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest as _, Sha256};

use crate::ClientError;

/// The ALPN name the native protocol's TLS listener speaks.
pub const ALPN: &[u8] = b"sensegate/1";

/// How the client checks the server's certificate.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// SHA-256 of the server certificate's DER.
    pub pin: Option<[u8; 32]>,
    /// A PEM file of CA certificates to verify against (when no pin).
    pub ca_file: Option<PathBuf>,
    /// Name to verify and send as SNI; default: the address's host.
    pub server_name: Option<String>,
}

/// Parses `AB:CD:...` (or plain hex) into a pin.
///
/// # Errors
/// A message when it is not 32 bytes of hex.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if hex.len() != 64 {
        return Err("fingerprint must be 32 bytes of hex (AB:CD:...)".into());
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| "fingerprint is not hex".to_owned())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| "fingerprint is not hex".to_owned())?;
    }
    Ok(out)
}

impl TlsOptions {
    /// A rustls client configuration, offering the native protocol's ALPN
    /// name ([`ALPN`]).
    ///
    /// # Errors
    /// [`ClientError::Tls`] when neither a pin nor a usable CA file is set.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, ClientError> {
        let mut config = self.client_config_without_alpn()?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    fn client_config_without_alpn(&self) -> Result<rustls::ClientConfig, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        if let Some(pin) = self.pin {
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCert { pin, provider }))
                .with_no_client_auth());
        }
        let Some(ca) = &self.ca_file else {
            return Err(ClientError::Tls(
                "TLS needs a certificate fingerprint or a CA file".into(),
            ));
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(ca).map_err(|e| ClientError::Tls(e.to_string()))?
        {
            let cert = cert.map_err(|e| ClientError::Tls(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Tls(e.to_string()))?;
        }
        Ok(builder.with_root_certificates(roots).with_no_client_auth())
    }

    /// The name to verify for `address` (`host:port`).
    ///
    /// # Errors
    /// [`ClientError::Tls`] for a name rustls cannot use.
    pub fn server_name(&self, address: &str) -> Result<ServerName<'static>, ClientError> {
        let host = self.server_name.clone().unwrap_or_else(|| {
            address
                .rsplit_once(':')
                .map_or(address, |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        });
        ServerName::try_from(host).map_err(|e| ClientError::Tls(e.to_string()))
    }
}

#[derive(Debug)]
struct PinnedCert {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let colons = ["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&colons).unwrap(), [0xAB; 32]);
        assert_eq!(parse_fingerprint(&"0f".repeat(32)).unwrap(), [0x0F; 32]);
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn server_name_defaults_to_the_host() {
        let t = TlsOptions::default();
        assert_eq!(
            t.server_name("127.0.0.1:7420").unwrap().to_str(),
            "127.0.0.1"
        );
        assert_eq!(t.server_name("localhost:1").unwrap().to_str(), "localhost");
        assert_eq!(t.server_name("[::1]:7420").unwrap().to_str(), "::1");
    }
}
