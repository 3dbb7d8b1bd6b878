//! What `sensegate serve` does at start: its first admin token is written
//! once where the operator says, and removed once it has been used, so the
//! secret does not stay readable on disk; a plaintext listener others can
//! reach is warned about.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use common::Gateway;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_token_file_is_removed_once_the_token_was_used() {
    let gw = Gateway::start("");
    let file = gw.dir.path().join("data/admin.token");
    // Still there until somebody signs in with it (the harness only read
    // it), private.
    assert!(file.exists(), "the token file went before its first use");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut c = gw.client().await;
    c.ping().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while file.exists() {
        assert!(Instant::now() < deadline, "the used token's file stayed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        gw.log_lines()
            .iter()
            .any(|l| l.contains("its file is removed") && !l.contains(&gw.token)),
        "no log line, or one holding the secret"
    );
    // The token itself still works.
    gw.client().await.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_file_puts_the_first_token_where_the_operator_says() {
    let dir = tempfile::tempdir().unwrap();
    let chosen = dir.path().join("first-admin.secret");
    let gw = Gateway::start_with(dir, &chosen, "");
    assert!(chosen.exists());
    assert!(!gw.dir.path().join("data/admin.token").exists());
    gw.client().await.ping().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while chosen.exists() {
        assert!(Instant::now() < deadline, "the used token's file stayed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The hole: a plaintext listener on an address other machines reach sent
/// tokens across the network in clear without a word. `serve` now warns,
/// once per such listener, and says which keys fix it; on loopback it
/// does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_listener_others_can_reach_is_warned_about() {
    let warned = |gw: &Gateway, listener: &str| {
        gw.log_lines().iter().any(|l| {
            l.contains("plaintext listener on a non-loopback address")
                && (l.contains(&format!("listener=\"{listener}\""))
                    || l.contains(&format!("listener={listener} ")))
                && l.contains("native.tls_cert")
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("data/admin.token");
    let mqtt = |ip: &str| format!("[mqtt]\nenabled = true\ntls = false\nlisten = \"{ip}:0\"\n");
    let open = Gateway::start_on(dir, &token_file, "0.0.0.0", &mqtt("0.0.0.0"));
    assert!(warned(&open, "native"), "{:#?}", open.log_lines());
    assert!(warned(&open, "http"), "{:#?}", open.log_lines());
    assert!(warned(&open, "mqtt"), "{:#?}", open.log_lines());
    open.client().await.ping().await.unwrap();
    let local = Gateway::start(&mqtt("127.0.0.1"));
    local.client().await.ping().await.unwrap();
    assert!(!warned(&local, "native") && !warned(&local, "http") && !warned(&local, "mqtt"));
}
