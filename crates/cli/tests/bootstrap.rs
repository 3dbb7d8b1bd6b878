//! `sensegate serve`'s first admin token: written once where the operator
//! says, and removed once it has been used, so the secret does not stay
//! readable on disk.
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
