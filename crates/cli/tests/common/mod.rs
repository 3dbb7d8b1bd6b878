//! A `sensegate serve` child for the binary's integration tests.
#![allow(
    clippy::unwrap_used,
    dead_code,
    reason = "test code; each test file uses part of it"
)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sensegate_client::{Client, ConnectOptions, Secret};

pub mod broker;
pub mod certs;
pub mod devices;
pub mod pg;

/// A `sensegate serve` child with its log lines collected.
pub struct Gateway {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub addr: String,
    /// The first admin token, read once: `serve` removes its file once it
    /// has been used.
    pub token: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// A daemon in a new directory, with `sources` appended to its config.
    pub fn start(sources: &str) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), sources)
    }

    /// A daemon over the data left in `dir` (after [`Gateway::kill`]).
    pub fn start_in(dir: tempfile::TempDir, sources: &str) -> Self {
        let token_file = dir.path().join("data/admin.token");
        Self::start_with(dir, &token_file, sources)
    }

    /// As [`Gateway::start_in`], with `[server] admin_token_file` set.
    pub fn start_with(dir: tempfile::TempDir, token_file: &std::path::Path, sources: &str) -> Self {
        Self::start_on(dir, token_file, "127.0.0.1", sources)
    }

    /// As [`Gateway::start_with`], both listeners on `ip` (port 0).
    pub fn start_on(
        dir: tempfile::TempDir,
        token_file: &std::path::Path,
        ip: &str,
        sources: &str,
    ) -> Self {
        Self::start_full(dir, token_file, ip, "", sources)
    }

    /// A daemon in a new directory named `name` (`server.name`).
    pub fn start_named(name: &str, sources: &str) -> Self {
        Self::start_named_in(tempfile::tempdir().unwrap(), name, sources)
    }

    /// As [`Gateway::start_named`], over the data left in `dir`.
    pub fn start_named_in(dir: tempfile::TempDir, name: &str, sources: &str) -> Self {
        let token_file = dir.path().join("data/admin.token");
        Self::start_full(
            dir,
            &token_file,
            "127.0.0.1",
            &format!("name = \"{name}\"\n"),
            sources,
        )
    }

    /// The general case: `server` lines go into `[server]`.
    pub fn start_full(
        dir: tempfile::TempDir,
        token_file: &std::path::Path,
        ip: &str,
        server: &str,
        sources: &str,
    ) -> Self {
        let data = dir.path().join("data");
        let config = dir.path().join("sensegate.toml");
        let text = format!(
            "[server]\ndata_dir = \"{}\"\nadmin_token_file = \"{}\"\n{server}[native]\nlisten = \"{ip}:0\"\n[http]\nlisten = \"{ip}:0\"\n{sources}",
            data.display(),
            token_file.display()
        );
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sensegate"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("SENSEGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let found = log
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| field(l, "addr").filter(|_| l.contains("native listener up")));
            if let Some(addr) = found {
                break addr;
            }
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        // Kept beside the data: a restart over the same store writes none.
        let kept = dir.path().join("harness-admin.token");
        let token = loop {
            if let Ok(t) = std::fs::read_to_string(token_file)
                && t.ends_with('\n')
            {
                std::fs::write(&kept, &t).unwrap();
                break t.trim().to_owned();
            }
            if let Ok(t) = std::fs::read_to_string(&kept) {
                break t.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "no admin token");
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            child,
            dir,
            addr,
            token,
            log,
        }
    }

    /// The HTTP listener's address, from the log.
    pub fn http_addr(&self) -> String {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| field(l, "addr").filter(|_| l.contains("http listener up")))
            .expect("no http listener")
    }

    /// `GET path` on the HTTP API with the admin token; the body.
    pub fn http_get(&self, path: &str) -> String {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(self.http_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.token
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split_once("\r\n\r\n")
            .map_or(out.clone(), |(_, b)| b.to_owned())
    }

    /// A metric's value for the series whose line starts with `series`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.http_get("/metrics")
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// Waits until uplink `name` is connected with nothing left to send
    /// (three looks in a row, 200 ms apart).
    pub fn settle(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let backlog = format!("sensegate_uplink_backlog_rows{{uplink=\"{name}\"");
        let connected = format!("sensegate_uplink_connected{{uplink=\"{name}\"");
        let mut quiet = 0;
        while quiet < 3 {
            assert!(Instant::now() < deadline, "the uplink did not settle");
            if self.metric(&backlog) == Some(0.0) && self.metric(&connected) == Some(1.0) {
                quiet += 1;
            } else {
                quiet = 0;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Lines the daemon logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub async fn client(&self) -> Client {
        let mut o = ConnectOptions::plain(self.addr.clone(), Secret::new(self.token.clone()));
        o.timeout = Duration::from_secs(20);
        Client::connect(&o).await.unwrap()
    }

    /// `(restarts, delay_ms)` of each restart logged for `source`.
    pub fn restarts(&self, source: &str) -> Vec<(u64, u64)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| {
                l.contains("driver host failed") && field(l, "source").as_deref() == Some(source)
            })
            .filter_map(|l| {
                Some((
                    field(l, "restarts")?.parse().ok()?,
                    field(l, "delay_ms")?.parse().ok()?,
                ))
            })
            .collect()
    }

    pub fn wait_restarts(&self, source: &str, n: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.restarts(source).last().map_or(0, |r| r.0) < n {
            assert!(
                Instant::now() < deadline,
                "{source}: fewer than {n} restarts in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn status(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)?
                    .trim()
                    .strip_suffix(" kB")?
                    .parse()
                    .ok()
            })
            .unwrap()
    }

    /// The daemon's open descriptors, the fewest seen over 200 ms: a host
    /// being started holds a pipe or two for a moment, a leak holds them
    /// for good.
    pub fn open_descriptors(&self) -> usize {
        (0..40)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(5));
                std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
                    .unwrap()
                    .count()
            })
            .min()
            .unwrap()
    }

    /// Children of the daemon that have exited but were not reaped.
    pub fn zombies(&self) -> usize {
        let me = self.child.id().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                // pid (comm) state ppid ...: comm may hold spaces, so split
                // after its closing parenthesis.
                let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
                let mut f = rest.split_whitespace();
                let state = f.next();
                let ppid = f.next();
                state == Some("Z") && ppid == Some(me.as_str())
            })
            .count()
    }
}

impl Gateway {
    /// Kills the daemon with SIGKILL and hands back its directory.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `key=value` in a log line (values end at whitespace).
pub fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    Some(line[start..].split_whitespace().next()?.to_owned())
}
