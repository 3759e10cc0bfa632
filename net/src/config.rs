//! The upstream configuration object (WIRE.md §4): shown by `GET /config`,
//! partially updated by `POST /config`, in two stages — JSON is decoded into
//! a patch (wrong JSON or type → code 4), then checked against what can
//! change while running (out of range or fixed at start → code 5).

use crate::control::LiveSettings;
use serde_json::{Map, Value, json};

/// Settings fixed when capture started (changing them needs a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartSettings {
    /// Ring buffer size per CPU in KiB.
    pub per_cpu_map_size: u64,
    /// Capture limit per call in bytes.
    pub truncate_size: u64,
}

/// The configuration in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    pub live: LiveSettings,
    pub start: StartSettings,
}

/// Why a config update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON, not an object, or a field of the wrong type (code 4).
    #[error("{0}")]
    Decode(String),
    /// A value out of range or not changeable now (code 5).
    #[error("{0}")]
    Check(String),
}

impl ConfigError {
    /// The envelope code.
    pub fn code(&self) -> u8 {
        match self {
            Self::Decode(_) => 4,
            Self::Check(_) => 5,
        }
    }
}

/// Keys the object has (unknown keys are refused).
const KEYS: &[&str] = &[
    "pid",
    "uid",
    "debug",
    "is_hex",
    "btf_mode",
    "per_cpu_map_size",
    "truncate_size",
    "log_level",
    "event_forward",
];

impl CaptureConfig {
    /// The object of `GET /config`.
    pub fn to_json(&self) -> Value {
        json!({
            "pid": self.live.pid.unwrap_or(0),
            "uid": self.live.uid.unwrap_or(0),
            "debug": false,
            "is_hex": self.live.hex,
            "btf_mode": 0,
            "per_cpu_map_size": self.start.per_cpu_map_size,
            "truncate_size": self.start.truncate_size,
            "log_level": "info",
            "event_forward": {"enabled": false},
        })
    }

    /// Applies a partial update to a copy; the caller commits it.
    pub fn patched(&self, body: &[u8]) -> Result<CaptureConfig, ConfigError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ConfigError::Decode(format!("config is not valid JSON: {e}")))?;
        let obj: &Map<String, Value> = v
            .as_object()
            .ok_or_else(|| ConfigError::Decode("config must be a JSON object".into()))?;
        let mut next = self.clone();
        for (k, v) in obj {
            match k.as_str() {
                "pid" => next.live.pid = nonzero(u32_field(v, "pid")?),
                "uid" => next.live.uid = nonzero(u32_field(v, "uid")?),
                "is_hex" => next.live.hex = bool_field(v, "is_hex")?,
                "debug" => {
                    if bool_field(v, "debug")? {
                        return Err(ConfigError::Check(
                            "debug: true is not supported (rcapture has no debug mode)".into(),
                        ));
                    }
                }
                "btf_mode" => {
                    if integer(v, "btf_mode", 0, 2)? == 2 {
                        return Err(ConfigError::Check(
                            "btf_mode: 2 (non-CO-RE) is not supported; rcapture's programs are CO-RE".into(),
                        ));
                    }
                }
                "log_level" => {
                    let s = v.as_str().ok_or_else(|| {
                        ConfigError::Decode(format!("log_level must be a string, got {v}"))
                    })?;
                    if s != "info" {
                        return Err(ConfigError::Check(format!(
                            "log_level: {s:?} is not supported (only \"info\")"
                        )));
                    }
                }
                "per_cpu_map_size" => {
                    let n = u64_field(v, "per_cpu_map_size")?;
                    if n != self.start.per_cpu_map_size {
                        return Err(ConfigError::Check(format!(
                            "per_cpu_map_size: {n} differs from {} KiB fixed at start; restart with --per-cpu-map-size",
                            self.start.per_cpu_map_size
                        )));
                    }
                }
                "truncate_size" => {
                    let n = u64_field(v, "truncate_size")?;
                    if n != self.start.truncate_size {
                        return Err(ConfigError::Check(format!(
                            "truncate_size: {n} differs from the capture limit {} fixed at start; restart with --max-payload",
                            self.start.truncate_size
                        )));
                    }
                }
                "event_forward" => {
                    // Validated and applied by the forwarding setup (see api.rs).
                    if !v.is_object() {
                        return Err(ConfigError::Decode(format!(
                            "event_forward must be an object, got {v}"
                        )));
                    }
                }
                other => {
                    return Err(ConfigError::Decode(format!(
                        "unknown config key {other:?} (known: {})",
                        KEYS.join(", ")
                    )));
                }
            }
        }
        Ok(next)
    }
}

fn nonzero(n: u32) -> Option<u32> {
    (n != 0).then_some(n)
}

fn u64_field(v: &Value, field: &str) -> Result<u64, ConfigError> {
    integer(v, field, 0, u64::MAX)
}

fn u32_field(v: &Value, field: &str) -> Result<u32, ConfigError> {
    // The range holds it.
    integer(v, field, 0, u64::from(u32::MAX)).map(|n| n as u32)
}

/// An integer field in `min..=max`: not a number, or a number with a
/// fraction or exponent (`1.5`, `1e3`), is a decoding error (code 4); an
/// integer outside the range (negative ones too) is out of range (code 5),
/// and the message quotes the range.
pub fn integer(v: &Value, field: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let Value::Number(n) = v else {
        return Err(ConfigError::Decode(format!(
            "{field} must be a number, got {v}"
        )));
    };
    if n.is_f64() {
        return Err(ConfigError::Decode(format!(
            "{field} must be an integer, got {n}"
        )));
    }
    match n.as_u64() {
        Some(x) if (min..=max).contains(&x) => Ok(x),
        _ => Err(ConfigError::Check(format!(
            "{field}: {n} is out of range {min}..={max}"
        ))),
    }
}

fn bool_field(v: &Value, field: &str) -> Result<bool, ConfigError> {
    v.as_bool()
        .ok_or_else(|| ConfigError::Decode(format!("{field} must be true or false, got {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CaptureConfig {
        CaptureConfig {
            live: LiveSettings::default(),
            start: StartSettings {
                per_cpu_map_size: 8192,
                truncate_size: 1 << 20,
            },
        }
    }

    #[test]
    fn partial_update_and_round_trip() {
        let c = cfg();
        let n = c.patched(br#"{"pid": 42, "is_hex": true}"#).unwrap();
        assert_eq!(
            n.live,
            LiveSettings {
                pid: Some(42),
                uid: None,
                hex: true
            }
        );
        // What GET shows can be posted back unchanged.
        let back = n
            .patched(&serde_json::to_vec(&n.to_json()).unwrap())
            .unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn errors_name_the_field_and_code() {
        let c = cfg();
        let e = c.patched(br#"{"pid": "x"}"#).unwrap_err();
        assert_eq!(
            (e.code(), e.to_string()),
            (4, "pid must be a number, got \"x\"".into())
        );
        let e = c.patched(br#"{"pid": 5000000000}"#).unwrap_err();
        assert_eq!(
            (e.code(), e.to_string()),
            (5, "pid: 5000000000 is out of range 0..=4294967295".into())
        );
        for (body, code, msg) in [
            (
                r#"{"uid": -1}"#,
                5,
                "uid: -1 is out of range 0..=4294967295",
            ),
            (r#"{"pid": 1.5}"#, 4, "pid must be an integer, got 1.5"),
            (r#"{"pid": 1e3}"#, 4, "pid must be an integer, got 1000.0"),
            (
                r#"{"truncate_size": -5}"#,
                5,
                "truncate_size: -5 is out of range 0..=18446744073709551615",
            ),
        ] {
            let e = c.patched(body.as_bytes()).unwrap_err();
            assert_eq!((e.code(), e.to_string()), (code, msg.into()), "{body}");
        }
        assert_eq!(c.patched(b"{").unwrap_err().code(), 4);
        assert_eq!(c.patched(b"[]").unwrap_err().code(), 4);
        assert_eq!(c.patched(br#"{"truncate_size": 5}"#).unwrap_err().code(), 5);
        assert!(
            c.patched(br#"{"nope": 1}"#)
                .unwrap_err()
                .to_string()
                .contains("\"nope\"")
        );
    }
}
