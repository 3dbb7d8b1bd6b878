//! The simulated sensor source: deterministic waveforms with seeded noise,
//! so the demo and the tests have live data without hardware.
//!
//! Sensor `i` follows one of four shapes (temperature, humidity, pressure,
//! vibration): a sine around a base value plus uniform noise from a
//! `SplitMix64` generator seeded with `seed` and `i`. The same seed and the
//! same timestamps give the same values.

use std::f64::consts::TAU;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::reading::{Quality, Reading, now_us};
use crate::service::SourceSink;

/// (kind, unit, base, amplitude, period in seconds, noise amplitude)
const SHAPES: [(&str, &str, f64, f64, f64, f64); 4] = [
    ("temperature", "C", 21.0, 3.0, 60.0, 0.1),
    ("humidity", "%", 45.0, 10.0, 90.0, 0.5),
    ("pressure", "hPa", 1013.0, 2.0, 300.0, 0.05),
    ("vibration", "mm/s", 2.0, 1.5, 5.0, 0.3),
];

/// One simulated sensor.
#[derive(Debug, Clone)]
pub struct SimSensor {
    /// Its name, `sim/<kind>` or `sim/<kind>-<n>`.
    pub name: String,
    /// Its unit.
    pub unit: &'static str,
    base: f64,
    amplitude: f64,
    period_s: f64,
    noise: f64,
    phase: f64,
    rng: u64,
}

impl SimSensor {
    /// Sensor number `index` of a source seeded with `seed`.
    #[must_use]
    pub fn new(index: usize, seed: u64) -> Self {
        let (kind, unit, base, amplitude, period_s, noise) = SHAPES[index % SHAPES.len()];
        let round = index / SHAPES.len();
        let name = if round == 0 {
            format!("sim/{kind}")
        } else {
            format!("sim/{kind}-{}", round + 1)
        };
        let mut rng = seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        #[allow(
            clippy::cast_precision_loss,
            reason = "53 bits of a random word are plenty"
        )]
        let phase = (splitmix(&mut rng) >> 11) as f64 / (1u64 << 53) as f64 * TAU;
        Self {
            name,
            unit,
            base,
            amplitude,
            period_s,
            noise,
            phase,
            rng,
        }
    }

    /// The next value, at `timestamp_us`.
    pub fn sample(&mut self, timestamp_us: i64) -> f64 {
        #[allow(
            clippy::cast_precision_loss,
            reason = "time in seconds as a float is the waveform's argument"
        )]
        let t = timestamp_us as f64 / 1e6;
        #[allow(
            clippy::cast_precision_loss,
            reason = "53 bits of a random word are plenty"
        )]
        let unit = (splitmix(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64;
        let wave = (TAU * t / self.period_s + self.phase).sin();
        self.amplitude.mul_add(wave, self.base) + self.noise * (2.0f64.mul_add(unit, -1.0))
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The simulated sensor source, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Whether it runs.
    pub enabled: bool,
    /// How many sensors (1 to 1000).
    pub sensors: usize,
    /// Readings per second per sensor (0.1 to 1000).
    pub rate_hz: f64,
    /// Seed of the noise.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            sensors: 4,
            rate_hz: 10.0,
            seed: 1,
        }
    }
}

/// Registers the sensors and feeds them until `shutdown`.
pub async fn run(sink: SourceSink, config: SimConfig, shutdown: CancellationToken) {
    let mut sensors: Vec<(Arc<str>, SimSensor)> = Vec::new();
    for i in 0..config.sensors {
        let s = SimSensor::new(i, config.seed);
        match sink.register(&s.name, s.unit) {
            Ok(name) => sensors.push((name, s)),
            Err(e) => {
                tracing::warn!(error = %e, "simulated sensors: catalog full");
                break;
            }
        }
    }
    let mut batch = Vec::with_capacity(sensors.len());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / config.rate_hz));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ts = now_us();
        batch.clear();
        batch.extend(sensors.iter_mut().map(|(name, s)| Reading {
            sensor: name.clone(),
            timestamp_us: ts,
            value: s.sample(ts),
            quality: Quality::Good,
        }));
        sink.ingest(&batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_values_and_names_are_unique() {
        let mut a = SimSensor::new(1, 7);
        let mut b = SimSensor::new(1, 7);
        let mut c = SimSensor::new(1, 8);
        let va: Vec<f64> = (0..50).map(|i| a.sample(i * 100_000)).collect();
        let vb: Vec<f64> = (0..50).map(|i| b.sample(i * 100_000)).collect();
        let vc: Vec<f64> = (0..50).map(|i| c.sample(i * 100_000)).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        // Humidity stays within base +- (amplitude + noise).
        assert!(va.iter().all(|v| (34.5..=55.5).contains(v)), "{va:?}");
        let names: std::collections::HashSet<String> =
            (0..12).map(|i| SimSensor::new(i, 1).name).collect();
        assert_eq!(names.len(), 12);
        assert!(names.contains("sim/temperature") && names.contains("sim/vibration-3"));
    }
}
