//! The side-by-side run: sensegate and an MQTT broker, each with the same
//! number of fan-out subscribers and the same idle connections, the rate
//! steps alternating between the two, and one row of figures per transport
//! (plain TCP, TLS) with the ratio sensegate / broker.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::fanout::{Plan, Run, Step};
use crate::hold::{self, Held};
use crate::process::Process;
use crate::target::Target;

/// A figure that was not measured (JSON has no NaN).
const NOT_MEASURED: f64 = -1.0;

/// One transport's comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// `TCP` or `TLS`.
    pub transport: String,
    /// Fan-out subscribers.
    pub subscribers: usize,
    /// sensegate's steps.
    pub sensegate_steps: Vec<StepFigures>,
    /// The broker's steps.
    pub mqtt_steps: Vec<StepFigures>,
    /// Resident bytes per idle connection, sensegate.
    pub sensegate_idle_bytes: f64,
    /// Resident bytes per idle connection, the broker.
    pub mqtt_idle_bytes: f64,
    /// Idle connections held.
    pub idle_connections: usize,
}

/// A step, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepFigures {
    /// Offered rate, readings/s.
    pub offered_rate: f64,
    /// Delivered per second, all subscribers.
    pub delivered_per_sec: f64,
    /// Share delivered.
    pub delivered_share: f64,
    /// p99, ms.
    pub p99_ms: f64,
    /// p50, ms.
    pub p50_ms: f64,
    /// Server CPU, cores.
    pub cpu_cores: f64,
    /// Met the bar.
    pub sustainable: bool,
    /// Readings published per second.
    #[serde(default)]
    pub published_rate: f64,
    /// Readings the server said it dropped for slow subscribers.
    #[serde(default)]
    pub server_dropped: u64,
    /// Why the step failed outright (then nothing above was measured).
    #[serde(default)]
    pub error: Option<String>,
    /// The step missed the bar once and was run again; these are the
    /// second run's figures.
    #[serde(default)]
    pub retried: bool,
}

impl From<&Step> for StepFigures {
    fn from(s: &Step) -> Self {
        Self {
            offered_rate: s.offered_rate,
            delivered_per_sec: s.delivered_per_sec,
            delivered_share: s.delivered_share,
            p99_ms: s.p99_ms,
            p50_ms: s.p50_ms,
            cpu_cores: s.cpu_cores,
            sustainable: s.sustainable,
            published_rate: s.published_rate,
            server_dropped: s.server_dropped,
            error: None,
            retried: false,
        }
    }
}

impl StepFigures {
    fn failed(offered_rate: f64, error: String) -> Self {
        Self {
            offered_rate,
            delivered_per_sec: 0.0,
            delivered_share: 0.0,
            p99_ms: NOT_MEASURED,
            p50_ms: NOT_MEASURED,
            cpu_cores: NOT_MEASURED,
            sustainable: false,
            published_rate: 0.0,
            server_dropped: 0,
            error: Some(error),
            retried: false,
        }
    }
}

/// The two servers.
pub struct Sides {
    /// sensegate and its pid.
    pub sensegate: (Target, Process),
    /// The broker and its pid.
    pub mqtt: (Target, Process),
}

/// Runs one transport's comparison: the hold scenario on each side, then
/// the alternating rate search until both sides have failed a step (or the
/// rates run out).
///
/// # Errors
/// A scenario failed outright.
pub async fn run(
    transport: &str,
    sides: &Sides,
    plan: &Plan,
    rates: &[f64],
    idle_connections: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Row> {
    // A side that fails a scenario outright still leaves the other side's
    // figures (and the rest of the run) standing.
    let idle = |h: Result<Held>, name: &str, progress: &mut dyn FnMut(&str)| match h {
        Ok(h) => {
            progress(&format!(
                "  {name:9} {:.0} B per idle connection",
                h.bytes_per_connection
            ));
            h.bytes_per_connection
        }
        Err(e) => {
            progress(&format!("  {name:9} hold failed: {e:#}"));
            NOT_MEASURED
        }
    };
    let sg_idle = idle(
        hold::run(&sides.sensegate.0, idle_connections, sides.sensegate.1).await,
        "sensegate",
        progress,
    );
    let mq_idle = idle(
        hold::run(&sides.mqtt.0, idle_connections, sides.mqtt.1).await,
        "mqtt",
        progress,
    );
    // Let both servers finish closing the idle connections.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut sg = Some(
        Run::start(
            sides.sensegate.0.clone(),
            plan.clone(),
            Some(sides.sensegate.1),
        )
        .await?,
    );
    let mut mq = Some(Run::start(sides.mqtt.0.clone(), plan.clone(), Some(sides.mqtt.1)).await?);
    let (mut sg_steps, mut mq_steps) = (Vec::new(), Vec::new());
    for &rate in rates {
        if sg.is_none() && mq.is_none() {
            break;
        }
        for (side, steps, name) in [
            (&mut sg, &mut sg_steps, "sensegate"),
            (&mut mq, &mut mq_steps, "mqtt"),
        ] {
            let Some(run) = side.as_mut() else {
                continue;
            };
            // A step that misses the bar is run once more before the search
            // stops: one stall of the machine should not end it (the same
            // rule for both servers).
            let mut figures = measure(run, rate, name, progress).await;
            if !figures.sustainable && figures.error.is_none() {
                progress(&format!("  {name:9} {rate:>6}/s: once more, to confirm"));
                figures = measure(run, rate, name, progress).await;
                figures.retried = true;
            }
            let go_on = figures.sustainable;
            steps.push(figures);
            if !go_on {
                // Off the machine at once, so its backlog does not slow the
                // other server's next step.
                if let Some(run) = side.take() {
                    run.stop();
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    for run in [sg, mq].into_iter().flatten() {
        run.stop();
    }
    Ok(Row {
        transport: transport.to_owned(),
        subscribers: plan.subscribers,
        sensegate_steps: sg_steps,
        mqtt_steps: mq_steps,
        sensegate_idle_bytes: sg_idle,
        mqtt_idle_bytes: mq_idle,
        idle_connections,
    })
}

/// One step, reported as it ends.
async fn measure(
    run: &mut Run,
    rate: f64,
    name: &str,
    progress: &mut dyn FnMut(&str),
) -> StepFigures {
    match run.step(rate).await {
        Ok(step) => {
            progress(&format!(
                "  {name:9} {rate:>6}/s: {:>9.0} delivered/s, {:>7.3}% delivered, p99 {:>7.2} ms, CPU {:.2} cores{}",
                step.delivered_per_sec,
                step.delivered_share * 100.0,
                step.p99_ms,
                step.cpu_cores,
                if step.sustainable {
                    ""
                } else {
                    "  (not sustainable)"
                }
            ));
            StepFigures::from(&step)
        }
        Err(e) => {
            progress(&format!("  {name:9} {rate:>6}/s: failed: {e:#}"));
            StepFigures::failed(rate, format!("{e:#}"))
        }
    }
}

/// The highest sustainable step.
fn best(steps: &[StepFigures]) -> Option<&StepFigures> {
    steps
        .iter()
        .filter(|s| s.sustainable)
        .max_by(|a, b| a.delivered_per_sec.total_cmp(&b.delivered_per_sec))
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

/// The table of one or more rows, in Markdown.
#[must_use]
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| transport | figure | sensegate | Mosquitto | sensegate / Mosquitto |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for r in rows {
        row(&mut out, r);
    }
    out
}

/// A number, or `-` when it was not measured.
fn num(x: f64, decimals: usize) -> String {
    if x.is_finite() && x >= 0.0 {
        format!("{x:.decimals$}")
    } else {
        "-".into()
    }
}

fn row(out: &mut String, r: &Row) {
    let t = &r.transport;
    let (sg, mq) = (best(&r.sensegate_steps), best(&r.mqtt_steps));
    let rate = |s: Option<&StepFigures>| s.map_or(0.0, |s| s.delivered_per_sec);
    let _ = writeln!(
        out,
        "| {t} | sustainable fan-out to {} subscribers, deliveries/s | {:.0} | {:.0} | {} |",
        r.subscribers,
        rate(sg),
        rate(mq),
        ratio(rate(sg), rate(mq))
    );
    if let Some(m) = mq {
        let s = r
            .sensegate_steps
            .iter()
            .find(|s| (s.offered_rate - m.offered_rate).abs() < 1e-9);
        let sp99 = s.map_or(f64::NAN, |s| s.p99_ms);
        let _ = writeln!(
            out,
            "| {t} | p99 latency at Mosquitto's sustainable rate ({:.0} readings/s), ms | {} | {} | {} |",
            m.offered_rate,
            num(sp99, 2),
            num(m.p99_ms, 2),
            ratio(sp99, m.p99_ms)
        );
        let lost =
            |x: Option<&StepFigures>| x.map_or(f64::NAN, |x| (1.0 - x.delivered_share) * 100.0);
        let _ = writeln!(
            out,
            "| {t} | readings lost at that rate, % | {} | {} | |",
            num(lost(s), 3),
            num(lost(Some(m)), 3)
        );
        let scpu = s.map_or(f64::NAN, |s| s.cpu_cores);
        let _ = writeln!(
            out,
            "| {t} | server CPU at that rate, cores | {} | {} | {} |",
            num(scpu, 2),
            num(m.cpu_cores, 2),
            ratio(scpu, m.cpu_cores)
        );
    }
    let first_failed = |steps: &[StepFigures]| match steps.iter().find(|s| !s.sustainable) {
        Some(s) if s.error.is_some() => format!("{:.0}/s: failed", s.offered_rate),
        Some(s) => format!(
            "{:.0}/s{}: {:.3}% lost, p99 {} ms, {:.0} of {:.0}/s sent",
            s.offered_rate,
            if s.retried { " (twice)" } else { "" },
            (1.0 - s.delivered_share) * 100.0,
            num(s.p99_ms, 1),
            s.published_rate,
            s.offered_rate
        ),
        None => "none: rates ran out, the figure above is a lower bound".to_owned(),
    };
    let _ = writeln!(
        out,
        "| {t} | first unsustainable step | {} | {} | |",
        first_failed(&r.sensegate_steps),
        first_failed(&r.mqtt_steps)
    );
    let _ = writeln!(
        out,
        "| {t} | resident memory per idle connection ({} held), bytes | {} | {} | {} |",
        r.idle_connections,
        num(r.sensegate_idle_bytes, 0),
        num(r.mqtt_idle_bytes, 0),
        ratio(r.sensegate_idle_bytes, r.mqtt_idle_bytes)
    );
}

/// The fan-out plan: subscribers and measured time per step.
#[must_use]
pub fn plan(subscribers: usize, measure: Duration) -> Plan {
    Plan {
        subscribers,
        warmup: Duration::from_secs(1),
        measure,
        drain: Duration::from_secs(2),
    }
}
