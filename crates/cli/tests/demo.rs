//! `sensegate demo` and the client commands through the built binary: the
//! README's second-terminal workflow, with no flags but the client config.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sensegate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sensegate"))
}

struct Demo {
    child: Child,
    dir: tempfile::TempDir,
}

impl Demo {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = sensegate()
            .args([
                "demo",
                "--native-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--mqtt-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path())
            .env("SENSEGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let config = dir.path().join("client.toml");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&config).is_ok_and(|t| t.contains("server_name")) {
            assert!(Instant::now() < deadline, "the demo wrote no client config");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, dir }
    }

    /// A client command with only `SENSEGATE_CLIENT_CONFIG` set.
    fn client(&self, args: &[&str]) -> Command {
        let mut c = sensegate();
        c.args(args)
            .env(
                "SENSEGATE_CLIENT_CONFIG",
                self.dir.path().join("client.toml"),
            )
            .env_remove("SENSEGATE_TOKEN");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.client(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_demo_serves_the_cli_with_no_flags_and_says_goodbye_on_sigterm() {
    let mut demo = Demo::start();
    assert_eq!(mode(&demo.dir.path().join("admin.token")), 0o600);
    assert_eq!(mode(&demo.dir.path().join("key.pem")), 0o600);

    // Live simulated data.
    let mut watch = demo
        .client(&["watch", "sim/*"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first: Vec<String> = (0..8).map(|_| lines.next().unwrap().unwrap()).collect();
    assert!(
        first.iter().any(|l| l.contains("sim/temperature")),
        "{first:?}"
    );

    let sensors = stdout(&demo.run(&["sensors"]));
    assert!(
        sensors.contains("sim/humidity") && sensors.contains(" ok "),
        "{sensors}"
    );
    assert!(stdout(&demo.run(&["read", "sim/pressure"])).contains("sim/pressure"));

    // The C sim driver runs in a sandboxed driver host and its readings
    // arrive like any others.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = stdout(&demo.run(&["sensors", "driver/*"]));
        let rows: Vec<&str> = listed
            .lines()
            .filter(|l| l.starts_with("driver/sim-"))
            .collect();
        if rows.len() == 3
            && rows
                .iter()
                .all(|r| r.contains("driver:c-sim") && r.contains(" ok "))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the C sim driver did not deliver:\n{listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(demo.dir.path().join("drivers/libsg_sim.so").exists());

    // A device token, used through a token file, pushing from stdin.
    let created = demo.run(&["token", "create", "--role", "device", "--scope", "dev/*"]);
    let secret = stdout(&created).trim().to_owned();
    assert!(secret.starts_with("sgt_"));
    let token_file = demo.dir.path().join("device.token");
    std::fs::write(&token_file, &secret).unwrap();
    let mut push = demo
        .client(&["push", "--token-file", token_file.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    push.stdin
        .take()
        .unwrap()
        .write_all(b"# a comment\ndev/t 21.5 1000\ndev/t 22.5 2000\n")
        .unwrap();
    let pushed = push.wait_with_output().unwrap();
    assert!(pushed.status.success());
    assert!(String::from_utf8_lossy(&pushed.stderr).contains("2 reading(s) accepted"));
    assert!(stdout(&demo.run(&["read", "dev/t"])).contains("22.5"));

    // A bad line is refused with its number and a data-error status.
    let mut bad = demo
        .client(&["push", "--token-file", token_file.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    bad.stdin
        .take()
        .unwrap()
        .write_all(b"dev/t 1\ndev/t oops\n")
        .unwrap();
    let bad = bad.wait_with_output().unwrap();
    assert_eq!(bad.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("line 2"));

    // A SenML pack from a file: base name and time resolved, one push.
    let pack = demo.dir.path().join("pack.json");
    std::fs::write(
        &pack,
        br#"[{"bn":"dev/senml/","bt":1700000000,"n":"temp","u":"Cel","v":21.25},{"n":"door","vb":true,"t":1}]"#,
    )
    .unwrap();
    let push_pack = || {
        demo.client(&[
            "push",
            "--format",
            "senml",
            "--file",
            pack.to_str().unwrap(),
            "--token-file",
            token_file.to_str().unwrap(),
        ])
        .output()
        .unwrap()
    };
    let senml = push_pack();
    assert!(
        senml.status.success(),
        "{}",
        String::from_utf8_lossy(&senml.stderr)
    );
    assert!(String::from_utf8_lossy(&senml.stderr).contains("2 reading(s) accepted"));
    let read = stdout(&demo.run(&["read", "dev/senml/temp"]));
    assert!(
        read.contains("21.25") && read.contains("1700000000"),
        "{read}"
    );
    assert!(stdout(&demo.run(&["read", "dev/senml/door"])).contains("1700000001"));
    // A bad pack is refused whole, with its reason.
    std::fs::write(&pack, br#"[{"n":"dev/ok","v":1},{"n":" bad","v":2}]"#).unwrap();
    let bad = push_pack();
    assert_eq!(bad.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("record 1: invalid name"));

    // Token list shows ids and roles, never secrets; revoke works.
    let list = stdout(&demo.run(&["token", "list"]));
    assert!(list.contains("device") && !list.contains(&secret), "{list}");
    let id = &secret[4..20];
    assert!(stdout(&demo.run(&["token", "revoke", id])).contains("revoked"));
    let refused = demo
        .client(&[
            "read",
            "dev/t",
            "--token-file",
            token_file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("UNAUTHENTICATED"));

    // Connections lists the watcher; SIGTERM ends the demo and the watcher
    // is told why.
    assert!(stdout(&demo.run(&["connections"])).contains("admin"));
    let status = demo.terminate();
    assert!(status.success(), "{status:?}");
    let watched = watch.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&watched.stderr);
    assert!(err.contains("server shutting down"), "{err}");
}
