//! Each scenario of `sensegate-bench`, small, against a daemon in this
//! process (so `--pid` is this test's own pid): the tool connects, measures
//! and writes JSON whose figures make sense.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::process::Command;

use sensegate_gateway::config::Config;
use sensegate_gateway::daemon::Daemon;

struct Server {
    _daemon: Daemon,
    addr: String,
    token_file: std::path::PathBuf,
    dir: tempfile::TempDir,
}

async fn server(extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\ndata_dir = {:?}\naudit_log = \"\"\n[native]\nlisten = \"127.0.0.1:0\"\n[http]\nenabled = false\n[limits]\nmax_connections_per_address = 5000\n{extra}",
        dir.path().display().to_string()
    );
    let config = Config::parse(&text, Path::new("bench.toml")).unwrap();
    let daemon = Daemon::start(&config).await.unwrap();
    let token_file = dir.path().join("admin.token");
    daemon.ensure_admin_token(&token_file).unwrap();
    Server {
        addr: daemon.native_addr().to_string(),
        _daemon: daemon,
        token_file,
        dir,
    }
}

/// Runs the tool (off the runtime's threads) and returns its JSON lines.
async fn bench(s: &Server, args: &[&str]) -> Vec<serde_json::Value> {
    let json = s.dir.path().join(format!("{}.jsonl", args[0]));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sensegate-bench"));
    cmd.args(args)
        .args(["--addr", &s.addr, "--token-file"])
        .arg(&s.token_file)
        .args(["--pid", &std::process::id().to_string(), "--json"])
        .arg(&json);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_reading_to_every_subscriber() {
    let s = server("[store]\nenabled = false\n").await;
    let steps = bench(
        &s,
        &[
            "fanout",
            "--subscribers",
            "20",
            "--rates",
            "100,400",
            "--measure-secs",
            "1",
        ],
    )
    .await;
    assert_eq!(steps.len(), 2);
    for (step, rate) in steps.iter().zip([100.0, 400.0]) {
        assert_eq!(step["offered_rate"], rate);
        assert_eq!(step["subscribers"], 20);
        assert!(step["delivered_share"].as_f64().unwrap() >= 0.999, "{step}");
        let delivered = step["delivered_per_sec"].as_f64().unwrap();
        assert!(
            (delivered - rate * 20.0).abs() <= rate * 20.0 * 0.06,
            "{step}"
        );
        assert!(step["p99_ms"].as_f64().unwrap() > 0.0);
        assert!(step["peak_rss_mib"].as_f64().unwrap() > 1.0);
        assert_eq!(step["sustainable"], true, "{step}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_ingest_churn_and_attack_report_their_figures() {
    let s = server("push_rate_per_sec = 10000000\n").await;
    let held = bench(&s, &["hold", "--connections", "200"]).await;
    assert_eq!(held[0]["connections"], 200);
    assert!(
        held[0]["rss_after_kib"].as_u64().unwrap() >= held[0]["rss_before_kib"].as_u64().unwrap()
    );

    let ingested = bench(
        &s,
        &["ingest", "--devices", "2", "--batch", "1,50", "--secs", "1"],
    )
    .await;
    assert_eq!(ingested.len(), 2);
    for r in &ingested {
        assert!(r["committed_per_sec"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["ack_p99_ms"].as_f64().unwrap() > 0.0, "{r}");
    }

    let churned = bench(
        &s,
        &["churn", "--holders", "4", "--patterns", "8", "--secs", "1"],
    )
    .await;
    let c = &churned[0];
    assert!(c["changes"].as_u64().unwrap() > 0, "{c}");
    assert!(
        c["loaded_delivered_share"].as_f64().unwrap() >= 0.999,
        "{c}"
    );

    let attacked = bench(
        &s,
        &["attack", "--slow", "20", "--rate", "20", "--secs", "1"],
    )
    .await;
    let a = &attacked[0];
    assert!(a["slow_connections"].as_u64().unwrap() >= 20, "{a}");
    for kind in ["oversize", "garbage", "brute_force"] {
        assert!(a[kind].as_u64().unwrap() > 0, "{kind}: {a}");
    }
    assert!(
        a["loaded_delivered_share"].as_f64().unwrap() >= 0.999,
        "{a}"
    );
    assert!(a["loaded_p99_ms"].as_f64().unwrap() > 0.0);
}
