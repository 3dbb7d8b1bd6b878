//! A real PostgreSQL server for one test: its own cluster (initdb) in a
//! temporary directory, on a free loopback port, TLS only (a CA made here
//! signs its certificate), SCRAM passwords. As root, every server command
//! runs as the `postgres` user (initdb refuses root). `scripts/test-all.sh`
//! installs the server; without one a test fails under `CI=true` and is
//! skipped with a message otherwise.
#![allow(
    clippy::unwrap_used,
    dead_code,
    reason = "test code; each test file uses part of it"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The password of the test role.
pub const PASSWORD: &str = "uplink-test-password-7f3a";
/// The test role and database.
pub const USER: &str = "sensegate";

/// One server.
pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    /// `Some(user)` when commands run as that user (we are root).
    as_user: Option<String>,
}

fn bin_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PG_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

fn id_of(user: &str, flag: &str) -> u32 {
    let out = Command::new("id").arg(flag).arg(user).output().unwrap();
    assert!(out.status.success(), "no user {user}");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// A new cluster, started; `None` (with a message) when no server is
    /// installed and this is not CI.
    pub fn start() -> Option<Self> {
        Self::start_with("")
    }

    /// As [`Postgres::start`], with `conf` appended to postgresql.conf.
    pub fn start_with(conf: &str) -> Option<Self> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL is not installed (scripts/test-all.sh installs postgresql-15)"
            );
            eprintln!(
                "SKIPPED: no PostgreSQL server installed (set PG_BIN, or apt-get install postgresql-15)"
            );
            return None;
        };
        let as_user = (euid() == 0).then(|| "postgres".to_owned());
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pg = Self {
            port: free_port(),
            dir,
            bin,
            as_user,
        };
        std::fs::create_dir(&data).unwrap();
        let pwfile = pg.dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        pg.own(pg.dir.path());
        pg.own(&data);
        pg.own(&pwfile);
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                USER,
                "--auth=scram-sha-256",
                "--pwfile",
                pwfile.to_str().unwrap(),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        // TLS: a CA, and the server's certificate signed by it.
        let ca = super::certs::TestCa::new();
        let (cert_pem, key_pem) = ca.server();
        let ca_pem = ca.pem();
        std::fs::write(pg.ca_file(), ca_pem).unwrap();
        std::fs::write(data.join("server.crt"), cert_pem).unwrap();
        std::fs::write(data.join("server.key"), key_pem).unwrap();
        std::fs::set_permissions(
            data.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        pg.own(&data.join("server.crt"));
        pg.own(&data.join("server.key"));
        let mut config = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut config,
            format!(
                "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
                 ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
                 max_connections = 30\nshared_buffers = 16MB\nfsync = on\n{conf}\n",
                pg.port,
                data.display()
            )
            .as_bytes(),
        )
        .unwrap();
        // TLS only, passwords only.
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        pg.own(&data.join("pg_hba.conf"));
        pg.server_start();
        pg.query_in("postgres", &format!("CREATE DATABASE {USER}"))
            .unwrap();
        std::fs::write(pg.password_file(), PASSWORD).unwrap();
        Some(pg)
    }

    fn own(&self, path: &Path) {
        if let Some(user) = &self.as_user {
            std::os::unix::fs::chown(path, Some(id_of(user, "-u")), Some(id_of(user, "-g")))
                .unwrap();
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let out = match &self.as_user {
            Some(u) => Command::new("runuser")
                .args(["-u", u, "--"])
                .arg(&exe)
                .args(args)
                .output()
                .unwrap(),
            None => Command::new(&exe).args(args).output().unwrap(),
        };
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server and waits for it.
    pub fn server_start(&self) {
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server at once, as a crash would (`-m immediate`: no
    /// checkpoint, WAL replay at the next start).
    pub fn crash(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// The CA the server's certificate chains to.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The password, in a file for the gateway.
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// An `[[uplink]]` section for this server (on `port`, which may be a
    /// proxy's), with short backoffs.
    pub fn uplink(&self, port: u16, extra: &str) -> String {
        format!(
            "[[uplink]]\nname = \"site\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             user = \"{USER}\"\npassword_file = \"{}\"\nca_file = \"{}\"\n\
             backoff_min_ms = 50\nbackoff_max_ms = 500\ntimeout_ms = 5000\n{extra}",
            self.password_file().display(),
            self.ca_file().display()
        )
    }

    /// Gateways named `names`, each uploading here with the default uplink.
    pub fn gateways(&self, names: &[&str]) -> Vec<super::Gateway> {
        names
            .iter()
            .map(|n| super::Gateway::start_named(n, &self.uplink(self.port, "")))
            .collect()
    }

    /// Runs `sql` with psql (TLS, the CA verified); its rows, `|`-separated.
    pub fn query(&self, sql: &str) -> Result<Vec<String>, String> {
        self.query_in(USER, sql)
    }

    /// As [`Postgres::query`], in database `db`.
    pub fn query_in(&self, db: &str, sql: &str) -> Result<Vec<String>, String> {
        let psql = self.bin.join("psql");
        let out = Command::new(psql)
            .arg(format!(
                "host=127.0.0.1 port={} user={USER} dbname={db} sslmode=verify-full sslrootcert={}",
                self.port,
                self.ca_file().display()
            ))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// Every reading stored centrally: (gateway, sensor, µs). Asked again
    /// while the server is not answering (it may be starting); no table at
    /// all is no readings (a crash can lose the schema too).
    pub fn readings(&self) -> Vec<(String, String, i64)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let rows = loop {
            match self.query(
                "SELECT r.gateway, s.name, (extract(epoch FROM r.time) * 1000000)::bigint \
                 FROM sensegate_readings r JOIN sensegate_readings_sensors s ON s.id = r.sensor",
            ) {
                Ok(rows) => break rows,
                Err(e) if e.contains("does not exist") => break Vec::new(),
                Err(e) => {
                    assert!(Instant::now() < deadline, "psql: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        rows.into_iter()
            .map(|l| {
                let mut f = l.split('|');
                (
                    f.next().unwrap().to_owned(),
                    f.next().unwrap().to_owned(),
                    f.next().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    /// Waits until `f` holds of the readings stored centrally.
    pub fn wait_for(
        &self,
        within: Duration,
        what: &str,
        mut f: impl FnMut(&[(String, String, i64)]) -> bool,
    ) -> Vec<(String, String, i64)> {
        let deadline = Instant::now() + within;
        loop {
            let rows = self.readings();
            if f(&rows) {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?} ({} rows)",
                rows.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.to_str().unwrap(), "-m", "immediate", "stop"];
        let _ = match &self.as_user {
            Some(u) => Command::new("runuser")
                .args(["-u", u, "--"])
                .arg(&exe)
                .args(args)
                .output(),
            None => Command::new(&exe).args(args).output(),
        };
    }
}

/// A TCP proxy the test owns: forwards to `target` until cut (every
/// connection closed, new ones refused) or stalled (connections kept open,
/// nothing forwarded: a silent network).
pub struct Proxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

/// Copies one direction, holding the bytes while `stalled` is set.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        while stalled.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    /// Listens on a free port, forwarding to 127.0.0.1:`target`.
    pub async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> =
            std::sync::Arc::default();
        let (c, k, st) = (cut.clone(), conns.clone(), stalled.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                // Checked under the lock `cut` drains with: a connection
                // is either refused here or aborted there.
                let mut list = k.lock().unwrap();
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let st = st.clone();
                list.push(tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::join!(forward(ir, ow, st.clone()), forward(or, iw, st));
                }));
            }
        });
        Self {
            port,
            cut,
            stalled,
            conns,
        }
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        let mut list = self.conns.lock().unwrap();
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in list.drain(..) {
            t.abort();
        }
    }

    /// Keeps every connection open and forwards nothing.
    pub fn stall(&self) {
        self.stalled
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.stalled
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
