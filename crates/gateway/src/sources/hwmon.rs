//! Linux hardware monitors: temperatures, fans, voltages, currents and power
//! under `ROOT/class/hwmon` (the root is configurable so tests can build a
//! fake tree).
//!
//! Each `hwmonN` directory names its chip in `name`; each channel is a
//! `<kind><k>_input` file (`temp1_input`, `fan2_input`, ...), with an optional
//! `<kind><k>_label`. A channel becomes the sensor `PREFIX/CHIP/LABEL`
//! (`hwmon/coretemp/Package_id_0`), the chip suffixed `-2`, `-3` when two
//! chips share a name. Values are converted from sysfs units (millidegrees,
//! millivolts, ...) to degC, rpm, V, A and W.
//!
//! sysfs is input like any other: directory listings and files are read with
//! caps, and a channel that cannot be read marks its own sensor faulted while
//! the others go on. The tree is scanned again every minute, so a chip that
//! appears later is picked up.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::config::{HwmonSource, is_name};
use crate::reading::{Quality, Reading, now_us};
use crate::service::SourceSink;
use sensegate_core::SensorState;

/// Most `hwmonN` directories looked at.
pub const MAX_CHIPS: usize = 64;
/// Most directory entries looked at per chip.
pub const MAX_ENTRIES: usize = 1024;
/// Most channels in all.
pub const MAX_CHANNELS: usize = 512;
/// Longest sysfs file read (values and labels are a few bytes).
const MAX_FILE: u64 = 64;
/// How often the tree is scanned again.
const RESCAN: Duration = Duration::from_secs(60);

/// One readable channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// The sensor name.
    pub sensor: String,
    /// The `*_input` file.
    pub input: PathBuf,
    /// The unit after scaling.
    pub unit: &'static str,
    /// What a raw value is divided by.
    pub scale: u32,
}

/// The kinds of channel read: file prefix, unit, divisor.
const KINDS: &[(&str, &str, u32)] = &[
    ("temp", "degC", 1000),
    ("fan", "rpm", 1),
    ("in", "V", 1000),
    ("curr", "A", 1000),
    ("power", "W", 1_000_000),
];

/// Lists the channels under `root/class/hwmon`, sorted by sensor name, at
/// most [`MAX_CHANNELS`].
#[must_use]
pub fn scan(root: &Path, prefix: &str, max_name: usize) -> Vec<Channel> {
    let base = root.join("class/hwmon");
    let Ok(dir) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut chips: Vec<PathBuf> = dir
        .take(MAX_CHIPS)
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    // hwmon0, hwmon1, ..., hwmon10 in numeric order, so suffixes are stable.
    chips.sort_by_key(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        (name.len(), name.to_owned())
    });
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for chip_dir in chips {
        let chip =
            read_small(&chip_dir.join("name")).map_or_else(|| "hwmon".to_owned(), |s| clean(&s));
        let n = seen.entry(chip.clone()).or_default();
        *n += 1;
        let chip = if *n == 1 { chip } else { format!("{chip}-{n}") };
        let Ok(entries) = std::fs::read_dir(&chip_dir) else {
            continue;
        };
        let mut files: Vec<String> = entries
            .take(MAX_ENTRIES)
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|f| f.ends_with("_input"))
            .collect();
        files.sort();
        for file in files {
            let stem = &file[..file.len() - "_input".len()];
            let Some(&(_, unit, scale)) = KINDS.iter().find(|(k, _, _)| {
                stem.strip_prefix(k)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            }) else {
                continue;
            };
            let label = read_small(&chip_dir.join(format!("{stem}_label")))
                .map_or_else(|| stem.to_owned(), |l| clean(&l));
            let sensor = format!("{prefix}/{chip}/{label}");
            if !is_name(&sensor, max_name) || out.len() >= MAX_CHANNELS {
                continue;
            }
            out.push(Channel {
                sensor,
                input: chip_dir.join(&file),
                unit,
                scale,
            });
        }
    }
    out.sort_by(|a, b| a.sensor.cmp(&b.sensor));
    out.dedup_by(|a, b| a.sensor == b.sensor);
    out
}

/// Reads one channel's value in its unit.
///
/// # Errors
/// A description of why it cannot be read.
pub fn read_channel(channel: &Channel) -> Result<f64, String> {
    let text = read_small(&channel.input).ok_or_else(|| "cannot read its sysfs file".to_owned())?;
    let raw: i64 = text
        .trim()
        .parse()
        .map_err(|_| "its sysfs file does not hold an integer".to_owned())?;
    #[allow(
        clippy::cast_precision_loss,
        reason = "sysfs values are far below 2^52"
    )]
    Ok(raw as f64 / f64::from(channel.scale))
}

/// A small sysfs file's text, or `None` when it cannot be read, is larger
/// than [`MAX_FILE`] or is not UTF-8.
fn read_small(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut buf = Vec::with_capacity(16);
    file.take(MAX_FILE + 1).read_to_end(&mut buf).ok()?;
    if buf.len() as u64 > MAX_FILE {
        return None;
    }
    String::from_utf8(buf).ok()
}

/// A chip name or label as a name part: trimmed, other bytes made `_`.
fn clean(s: &str) -> String {
    s.trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii() && sensegate_proto::envelope::is_name_byte(c as u8) && c != '/' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs the source until `shutdown`.
pub async fn run(sink: SourceSink, source: HwmonSource, shutdown: CancellationToken) {
    let max_name = sink.limits().message.max_name_bytes;
    let mut channels: Vec<(Channel, Arc<str>)> = Vec::new();
    let mut scanned: Option<Instant> = None;
    let mut tick = tokio::time::interval(source.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if scanned.is_none_or(|t| t.elapsed() >= RESCAN) {
            let (root, prefix) = (source.root.clone(), source.prefix.clone());
            let found = tokio::task::spawn_blocking(move || scan(&root, &prefix, max_name))
                .await
                .unwrap_or_default();
            channels = register(&sink, found);
            scanned = Some(Instant::now());
        }
        let list: Vec<Channel> = channels.iter().map(|(c, _)| c.clone()).collect();
        let Ok(values) =
            tokio::task::spawn_blocking(move || list.iter().map(read_channel).collect::<Vec<_>>())
                .await
        else {
            continue;
        };
        let ts = now_us();
        let mut batch = Vec::with_capacity(values.len());
        for ((_, name), value) in channels.iter().zip(values) {
            match value {
                Ok(value) => batch.push(Reading {
                    sensor: name.clone(),
                    timestamp_us: ts,
                    value,
                    quality: Quality::Good,
                }),
                Err(reason) => {
                    sink.set_state(std::slice::from_ref(name), SensorState::Faulted, &reason);
                }
            }
        }
        sink.ingest(&batch);
    }
}

fn register(sink: &SourceSink, found: Vec<Channel>) -> Vec<(Channel, Arc<str>)> {
    let mut out = Vec::with_capacity(found.len());
    for channel in found {
        match sink.register(&channel.sensor, channel.unit) {
            Ok(name) => out.push((channel, name)),
            Err(e) => {
                tracing::warn!(error = %e, "hwmon: sensor not added");
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    fn tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let hw = root.path().join("class/hwmon");
        let cpu = hw.join("hwmon0");
        write(&cpu, "name", "coretemp\n");
        write(&cpu, "temp1_input", "45000\n");
        write(&cpu, "temp1_label", "Package id 0\n");
        write(&cpu, "temp2_input", "43500\n");
        write(&cpu, "temp2_max", "100000\n");
        let board = hw.join("hwmon1");
        write(&board, "name", "nct6775\n");
        write(&board, "fan1_input", "1200\n");
        write(&board, "in0_input", "1104\n");
        write(&board, "power1_input", "15500000\n");
        write(&board, "tempx_input", "1\n");
        // A second chip with the same name.
        write(&hw.join("hwmon2"), "name", "coretemp\n");
        write(&hw.join("hwmon2"), "temp1_input", "50000\n");
        root
    }

    #[test]
    fn channels_are_found_named_and_scaled() {
        let root = tree();
        let channels = scan(root.path(), "hwmon", 128);
        let names: Vec<&str> = channels.iter().map(|c| c.sensor.as_str()).collect();
        assert_eq!(
            names,
            [
                "hwmon/coretemp-2/temp1",
                "hwmon/coretemp/Package_id_0",
                "hwmon/coretemp/temp2",
                "hwmon/nct6775/fan1",
                "hwmon/nct6775/in0",
                "hwmon/nct6775/power1",
            ]
        );
        let value = |n: &str| {
            let c = channels.iter().find(|c| c.sensor == n).unwrap();
            (read_channel(c).unwrap(), c.unit)
        };
        assert_eq!(value("hwmon/coretemp/Package_id_0"), (45.0, "degC"));
        assert_eq!(value("hwmon/coretemp/temp2"), (43.5, "degC"));
        assert_eq!(value("hwmon/nct6775/fan1"), (1200.0, "rpm"));
        assert_eq!(value("hwmon/nct6775/in0"), (1.104, "V"));
        assert_eq!(value("hwmon/nct6775/power1"), (15.5, "W"));
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        let root = tree();
        let cpu = root.path().join("class/hwmon/hwmon0");
        std::fs::write(cpu.join("temp2_input"), "hot\n").unwrap();
        std::fs::write(cpu.join("temp1_input"), "1".repeat(100)).unwrap();
        let channels = scan(root.path(), "hwmon", 128);
        let get = |n: &str| channels.iter().find(|c| c.sensor == n).unwrap();
        assert!(
            read_channel(get("hwmon/coretemp/temp2"))
                .unwrap_err()
                .contains("integer")
        );
        assert!(
            read_channel(get("hwmon/coretemp/Package_id_0")).is_err(),
            "oversize file"
        );
        std::fs::remove_file(cpu.join("temp2_input")).unwrap();
        assert!(
            read_channel(get("hwmon/coretemp/temp2"))
                .unwrap_err()
                .contains("cannot read")
        );
    }

    #[test]
    fn a_missing_tree_has_no_channels_and_names_respect_the_cap() {
        let empty = tempfile::tempdir().unwrap();
        assert!(scan(empty.path(), "hwmon", 128).is_empty());
        let root = tree();
        // "hwmon/coretemp/Package_id_0" is 27 bytes.
        assert!(
            scan(root.path(), "hwmon", 26)
                .iter()
                .all(|c| c.sensor.len() <= 26)
        );
    }
}
