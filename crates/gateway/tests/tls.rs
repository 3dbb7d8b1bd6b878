//! TLS 1.3 on the native listener, with the client pinning the certificate.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

use std::path::Path;
use std::time::Duration;

use sensegate_client::pin::{TlsOptions, parse_fingerprint};
use sensegate_client::{Client, ClientError, ConnectOptions, Secret};
use sensegate_gateway::config::Config;
use sensegate_gateway::daemon::Daemon;
use sensegate_gateway::tls::ensure_self_signed;

async fn tls_daemon(dir: &Path) -> (Daemon, Secret) {
    let (cert, key) = ensure_self_signed(dir).unwrap();
    let text = format!(
        "[server]\ndata_dir = {:?}\n[native]\nlisten = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n",
        dir.display().to_string(),
        cert.display().to_string(),
        key.display().to_string()
    );
    let config = Config::parse(&text, Path::new("t.toml")).unwrap();
    let daemon = Daemon::start(&config).await.unwrap();
    let token = daemon.ensure_admin_token(&dir.join("admin.token")).unwrap();
    (daemon, Secret::new(token.expose()))
}

fn options(daemon: &Daemon, token: &Secret, pin: [u8; 32]) -> ConnectOptions {
    let mut o = ConnectOptions::plain(daemon.native_addr().to_string(), token.clone());
    o.tls = Some(TlsOptions {
        pin: Some(pin),
        ..TlsOptions::default()
    });
    o.timeout = Duration::from_secs(5);
    o
}

#[tokio::test]
async fn a_pinned_client_is_served_and_a_wrong_pin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, token) = tls_daemon(dir.path()).await;
    let pin = parse_fingerprint(daemon.fingerprint().unwrap()).unwrap();
    let mut c = Client::connect(&options(&daemon, &token, pin))
        .await
        .unwrap();
    c.ping().await.unwrap();
    assert_eq!(c.welcome().principal, "admin");

    let mut wrong = pin;
    wrong[0] ^= 1;
    let e = Client::connect(&options(&daemon, &token, wrong))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Io(_)), "{e}");

    // A plain-TCP client gets no protocol out of a TLS port.
    let plain = ConnectOptions {
        timeout: Duration::from_secs(5),
        ..ConnectOptions::plain(daemon.native_addr().to_string(), token.clone())
    };
    assert!(Client::connect(&plain).await.is_err());
    c.ping().await.unwrap();
}

/// Cross-protocol confusion: each TLS listener speaks one ALPN protocol, so a
/// client that offers only another one is refused in the handshake.
#[tokio::test]
async fn each_tls_listener_refuses_a_client_offering_only_another_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, token) = tls_daemon(dir.path()).await;
    let pin = parse_fingerprint(daemon.fingerprint().unwrap()).unwrap();
    // The client crate offers sensegate/1 and is served.
    let mut c = Client::connect(&options(&daemon, &token, pin))
        .await
        .unwrap();
    c.ping().await.unwrap();
    let handshake = |addr: std::net::SocketAddr, alpn: &'static [u8]| async move {
        let mut config = TlsOptions {
            pin: Some(pin),
            ..TlsOptions::default()
        }
        .client_config()
        .unwrap();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector
            .connect(name, tcp)
            .await
            .map(|s| s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
    };
    let (native, http) = (daemon.native_addr(), daemon.http_addr().unwrap());
    assert_eq!(
        handshake(native, b"sensegate/1").await.unwrap(),
        Some(b"sensegate/1".to_vec())
    );
    assert!(
        handshake(native, b"http/1.1").await.is_err(),
        "the native listener accepted an HTTP client"
    );
    assert_eq!(
        handshake(http, b"http/1.1").await.unwrap(),
        Some(b"http/1.1".to_vec())
    );
    assert!(
        handshake(http, b"sensegate/1").await.is_err(),
        "the HTTP listener accepted a native client"
    );
}
