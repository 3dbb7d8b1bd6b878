//! A real Mosquitto 2 broker for one test: TLS with client certificates
//! only (a CA made here signs them), the certificate's common name as the
//! user name, and an ACL that confines each gateway to its own prefix
//! (`pattern write sensegate/%u/#`) while the site's reader reads all of
//! them. A subscriber is `mosquitto_sub`, a real client. Without the
//! broker a test fails under `CI=true` and is skipped with a message
//! otherwise (`scripts/test-all.sh` installs mosquitto and its clients).
#![allow(
    clippy::unwrap_used,
    dead_code,
    reason = "test code; each test file uses part of it"
)]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::certs::TestCa;
use super::pg::free_port;

/// The ACL the broker enforces (also shown in `docs/site.md`).
pub const ACL: &str = "# Each gateway publishes under its own name only (its certificate's CN).\n\
pattern write sensegate/%u/#\n\
# The site's reader reads every gateway.\n\
user site\n\
topic read sensegate/#\n";

/// One broker.
pub struct Broker {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Broker {
    /// A broker with the ACL above; client certificates for `clients` (by
    /// common name) are made beside it. No in-flight cap towards the reader
    /// (`max_inflight_messages 0`): what the broker acknowledges it writes on
    /// at once, so a kill loses nothing it held back. `None` when Mosquitto is not
    /// installed and this is not CI.
    pub fn start(clients: &[&str]) -> Option<Self> {
        if !have("mosquitto") || !have("mosquitto_sub") {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "mosquitto and mosquitto_sub are not installed (scripts/test-all.sh installs them)"
            );
            eprintln!(
                "SKIPPED: no mosquitto broker installed (apt-get install mosquitto mosquitto-clients)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // Mosquitto started as root drops to its own user: it must reach
        // its files (throwaway test keys).
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let ca = TestCa::new();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .unwrap();
        };
        write("ca.pem", &ca.pem());
        let (cert, key) = ca.server();
        write("broker.crt", &cert);
        write("broker.key", &key);
        for c in clients.iter().chain(&["site"]) {
            let (cert, key) = ca.issue(c, &[]);
            write(&format!("{c}.crt"), &cert);
            write(&format!("{c}.key"), &key);
        }
        write("acl", ACL);
        let port = free_port();
        let d = dir.path().display();
        write(
            "mosquitto.conf",
            &format!(
                "per_listener_settings false\nallow_anonymous false\npersistence false\n\
                 acl_file {d}/acl\nlistener {port} 127.0.0.1\ncafile {d}/ca.pem\n\
                 certfile {d}/broker.crt\nkeyfile {d}/broker.key\nrequire_certificate true\n\
                 use_identity_as_username true\nmax_inflight_messages 0\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n"
            ),
        );
        let mut b = Self {
            dir,
            port,
            child: None,
        };
        b.restart();
        Some(b)
    }

    /// Starts the broker (again) and waits until it listens.
    pub fn restart(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("broker.log")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A file beside the broker.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An `[[uplink]]` to this broker (on `port`, which may be a proxy's)
    /// as the client `cn`, with short backoffs.
    pub fn uplink(&self, port: u16, cn: &str, extra: &str) -> String {
        format!(
            "[[uplink]]\nname = \"bus\"\nkind = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n\
             backoff_min_ms = 50\nbackoff_max_ms = 500\ntimeout_ms = 5000\n{extra}",
            self.file("ca.pem").display(),
            self.file(&format!("{cn}.crt")).display(),
            self.file(&format!("{cn}.key")).display(),
        )
    }

    /// `mosquitto_sub` as the site's reader on `filter`, QoS 1, MQTT 5,
    /// collecting `topic payload` lines.
    pub fn subscribe(&self, filter: &str) -> Subscriber {
        // Line-buffered: its output is a pipe here.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("--cafile")
            .arg(self.file("ca.pem"))
            .arg("--cert")
            .arg(self.file("site.crt"))
            .arg("--key")
            .arg(self.file("site.key"))
            .args(["-V", "mqttv5", "-q", "1", "-t", filter, "-F", "%t %p", "-d"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = lines.clone();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let err = BufReader::new(child.stderr.take().unwrap());
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in err.lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(format!("Client stderr: {line}"));
            }
        });
        let s = Subscriber { child, lines };
        // `-d` prints the SUBACK: subscribed from then on.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !s.debug().iter().any(|l| l.contains("SUBACK")) {
            assert!(
                Instant::now() < deadline,
                "mosquitto_sub did not subscribe: {:?}",
                s.debug()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `mosquitto_sub`.
pub struct Subscriber {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    fn debug(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Messages received so far: (topic, payload).
    pub fn messages(&self) -> Vec<(String, String)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed"))
            .filter_map(|l| {
                let (t, p) = l.split_once(' ')?;
                Some((t.to_owned(), p.to_owned()))
            })
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
