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
    let sg_hold: Held = hold::run(&sides.sensegate.0, idle_connections, sides.sensegate.1).await?;
    progress(&format!(
        "  sensegate: {:.0} B per idle connection",
        sg_hold.bytes_per_connection
    ));
    let mq_hold: Held = hold::run(&sides.mqtt.0, idle_connections, sides.mqtt.1).await?;
    progress(&format!(
        "  mqtt:      {:.0} B per idle connection",
        mq_hold.bytes_per_connection
    ));

    // Let both servers finish closing the idle connections.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut sg = Run::start(
        sides.sensegate.0.clone(),
        plan.clone(),
        Some(sides.sensegate.1),
    )
    .await?;
    let mut mq = Run::start(sides.mqtt.0.clone(), plan.clone(), Some(sides.mqtt.1)).await?;
    let (mut sg_steps, mut mq_steps) = (Vec::new(), Vec::new());
    let (mut sg_on, mut mq_on) = (true, true);
    for &rate in rates {
        if !sg_on && !mq_on {
            break;
        }
        for (on, run, steps, name) in [
            (&mut sg_on, &mut sg, &mut sg_steps, "sensegate"),
            (&mut mq_on, &mut mq, &mut mq_steps, "mqtt"),
        ] {
            if !*on {
                continue;
            }
            let step = match run.step(rate).await {
                Ok(s) => s,
                Err(e) => {
                    progress(&format!("  {name} at {rate}/s: {e}"));
                    *on = false;
                    continue;
                }
            };
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
            *on = step.sustainable;
            steps.push(StepFigures::from(&step));
        }
    }
    sg.stop();
    mq.stop();
    Ok(Row {
        transport: transport.to_owned(),
        subscribers: plan.subscribers,
        sensegate_steps: sg_steps,
        mqtt_steps: mq_steps,
        sensegate_idle_bytes: sg_hold.bytes_per_connection,
        mqtt_idle_bytes: mq_hold.bytes_per_connection,
        idle_connections,
    })
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
        let at = |steps: &[StepFigures], offered: f64| {
            steps
                .iter()
                .find(|s| (s.offered_rate - offered).abs() < 1e-9)
                .cloned()
        };
        if let Some(m) = mq {
            let s = at(&r.sensegate_steps, m.offered_rate);
            let sp99 = s.as_ref().map_or(f64::NAN, |s| s.p99_ms);
            let _ = writeln!(
                out,
                "| {t} | p99 latency at Mosquitto's sustainable rate ({:.0} readings/s), ms | {sp99:.2} | {:.2} | {} |",
                m.offered_rate,
                m.p99_ms,
                ratio(sp99, m.p99_ms)
            );
            let lost =
                |x: Option<&StepFigures>| x.map_or(f64::NAN, |x| (1.0 - x.delivered_share) * 100.0);
            let _ = writeln!(
                out,
                "| {t} | readings lost at that rate | {:.3}% | {:.3}% | |",
                lost(s.as_ref()),
                lost(Some(m))
            );
            let _ = writeln!(
                out,
                "| {t} | server CPU at that rate, cores | {:.2} | {:.2} | {} |",
                s.as_ref().map_or(f64::NAN, |s| s.cpu_cores),
                m.cpu_cores,
                ratio(s.as_ref().map_or(f64::NAN, |s| s.cpu_cores), m.cpu_cores)
            );
        }
        let top_lost = |steps: &[StepFigures]| {
            steps
                .last()
                .map_or(f64::NAN, |x| (1.0 - x.delivered_share) * 100.0)
        };
        let _ = writeln!(
            out,
            "| {t} | readings lost at the first unsustainable step | {:.3}% | {:.3}% | |",
            top_lost(&r.sensegate_steps),
            top_lost(&r.mqtt_steps)
        );
        let _ = writeln!(
            out,
            "| {t} | resident memory per idle connection ({} held), bytes | {:.0} | {:.0} | {} |",
            r.idle_connections,
            r.sensegate_idle_bytes,
            r.mqtt_idle_bytes,
            ratio(r.sensegate_idle_bytes, r.mqtt_idle_bytes)
        );
    }
    out
}

/// Fan-out steps from a rate list and step length.
#[must_use]
pub fn plan(subscribers: usize, measure: Duration) -> Plan {
    Plan {
        subscribers,
        warmup: Duration::from_secs(1),
        measure,
        drain: Duration::from_secs(2),
    }
}
