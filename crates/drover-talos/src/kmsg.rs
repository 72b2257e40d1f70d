//! The kernel log a Talos node streams to `talos.logging.kernel=tcp://[server]:8092`: one JSON
//! object per line, keys `msg`, `talos-time` (RFC3339Nano), `talos-level`, `facility`, `seq`,
//! `clock`, `priority`.
//!
//! [`parse_line`] is lenient: only `msg` is required, every other key may be missing (or
//! `null`), numbers may arrive as strings, and unknown keys are kept in
//! [`KmsgRecord::extra`].

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// One kernel log record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KmsgRecord {
    /// The message text.
    pub msg: String,
    /// When the node logged it, RFC3339Nano as sent (see [`KmsgRecord::time`]).
    #[serde(
        rename = "talos-time",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub talos_time: Option<String>,
    /// Log level, e.g. `info`, `warn`, `error`, `debug`.
    #[serde(
        rename = "talos-level",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub talos_level: Option<String>,
    /// Syslog facility name, e.g. `kern`, `daemon`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    /// Kernel sequence number.
    #[serde(
        default,
        deserialize_with = "lenient_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub seq: Option<u64>,
    /// Kernel clock: microseconds since boot.
    #[serde(
        default,
        deserialize_with = "lenient_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub clock: Option<u64>,
    /// Syslog priority name, e.g. `info`, `notice`, `warning`, `err`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Keys this format does not name, kept as sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl KmsgRecord {
    /// A record with `msg` and `talos-time` set (formatted like Go's RFC3339Nano).
    pub fn new(msg: impl Into<String>, time: DateTime<Utc>) -> Self {
        Self {
            msg: msg.into(),
            talos_time: Some(format_rfc3339_nano(time)),
            ..Default::default()
        }
    }

    /// `talos-time` parsed; `None` when missing or not RFC 3339.
    pub fn time(&self) -> Option<DateTime<FixedOffset>> {
        DateTime::parse_from_rfc3339(self.talos_time.as_deref()?).ok()
    }
}

/// Why a line is not a kernel log record.
#[derive(Debug, thiserror::Error)]
pub enum KmsgError {
    #[error("empty line")]
    Empty,
    #[error("not a kernel log record: {0}")]
    Json(#[from] serde_json::Error),
}

/// The line a node sends for `record`: compact JSON followed by `\n`.
pub fn encode_line(record: &KmsgRecord) -> String {
    let mut line = serde_json::to_string(record).expect("a KmsgRecord always serializes");
    line.push('\n');
    line
}

/// Parses one line (a trailing `\n` or `\r\n` is ignored).
pub fn parse_line(line: &str) -> Result<KmsgRecord, KmsgError> {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.trim().is_empty() {
        return Err(KmsgError::Empty);
    }
    Ok(serde_json::from_str(line)?)
}

/// Go's `time.RFC3339Nano` in UTC: fractional seconds with trailing zeros removed, `Z`.
pub fn format_rfc3339_nano(time: DateTime<Utc>) -> String {
    let base = time.format("%Y-%m-%dT%H:%M:%S");
    let nanos = time.nanosecond() % 1_000_000_000;
    if nanos == 0 {
        return format!("{base}Z");
    }
    let fraction = format!("{nanos:09}");
    format!("{base}.{}Z", fraction.trim_end_matches('0'))
}

/// `u64` from a JSON number or a numeric string; `null` is `None`.
fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Float(f64),
        Text(String),
    }
    match Option::<Raw>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Float(f)) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => {
            Ok(Some(f as u64))
        }
        Some(Raw::Float(f)) => Err(serde::de::Error::custom(format!(
            "expected an unsigned integer, got {f}"
        ))),
        Some(Raw::Text(s)) => s.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("expected an unsigned integer, got {s:?}"))
        }),
    }
}
