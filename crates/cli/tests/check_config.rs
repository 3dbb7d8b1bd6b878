//! `sensegate check-config` through the built binary.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::process::Command;

fn check(path: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sensegate"))
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/sensegate.toml")
}

#[test]
fn the_example_config_is_valid() {
    let (code, out, err) = check(&example());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn the_example_config_sets_every_limit_in_the_security_table() {
    let example = std::fs::read_to_string(example()).unwrap();
    let security = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/security.md"),
    )
    .unwrap();
    let keys: Vec<&str> = security
        .split('`')
        .filter_map(|s| s.strip_prefix("limits."))
        .collect();
    assert!(keys.len() >= 20, "{keys:?}");
    for key in keys {
        assert!(
            example.lines().any(|l| l.starts_with(&format!("{key} ="))),
            "docs/security.md names limits.{key}, which deploy/sensegate.toml does not set"
        );
    }
}

#[test]
fn a_bad_value_is_reported_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[limits]\nmax_connections = 5\nmax_frame_bytes = 99999999\n",
    )
    .unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, 78);
    assert!(
        err.contains(":3: `limits.max_frame_bytes` is 99999999"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_is_reported_with_its_name_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[native]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n").unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, 78);
    assert!(err.contains("lisen") && err.contains("line 3"), "{err}");
}

#[test]
fn a_missing_file_is_an_error() {
    let (code, _, err) = check(Path::new("/nonexistent/sensegate.toml"));
    assert_eq!(code, 78);
    assert!(err.contains("/nonexistent/sensegate.toml"), "{err}");
}

#[test]
fn the_commented_source_examples_in_the_example_config_are_valid() {
    // Uncomment the `[[driver]]` and `[[serial]]` examples and check them.
    let text: String = std::fs::read_to_string(example())
        .unwrap()
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with("[[")
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
            {
                format!("{rest}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect();
    assert!(text.contains("\n[[driver]]\n") && text.contains("\n[[serial]]\n"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.toml");
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = check(&path);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"), "{out}");
}
