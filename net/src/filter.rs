//! Per-client stream filters (WIRE.md §3): from a query string or a
//! `{"op":"subscribe","filter":{...}}` frame, validated, shown back as JSON.

use crate::publish::EntryMeta;
use rcapture_core::event::{EventKind, Module};
use serde_json::{Map, Value, json};

/// What a client wants; empty sets mean everything, except that packet
/// events (`-m pcap`, raw frames at packet rate) go only to clients whose
/// `types` name `packet`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFilter {
    pub modules: Vec<Module>,
    pub pids: Vec<u32>,
    pub uids: Vec<u32>,
    pub types: Vec<EventKind>,
    /// Events per second at most (0 = unlimited).
    pub max_rate: u32,
}

/// Largest list accepted in a filter.
pub const MAX_LIST: usize = 256;

impl ClientFilter {
    /// Whether an entry passes (rate limiting is applied by the caller).
    pub fn passes(&self, m: &EntryMeta) -> bool {
        (self.modules.is_empty() || self.modules.contains(&m.module))
            && kind_wanted(&self.types, m.kind)
            && (self.pids.is_empty() || self.pids.contains(&m.pid))
            && (self.uids.is_empty() || self.uids.contains(&m.uid))
    }

    /// The filter as JSON (the `filter` of a `subscribed` reply).
    pub fn to_json(&self) -> Value {
        json!({
            "modules": self.modules.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "pids": self.pids,
            "uids": self.uids,
            "types": self.types.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "max_rate": self.max_rate,
        })
    }

    /// Parses `modules=tls,bash&pids=1,2&uids=0&types=data&max_rate=5000`
    /// (other keys, such as `token`, are ignored).
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut f = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let items = || v.split(',').filter(|s| !s.is_empty());
            match k {
                "modules" => f.modules = list(items(), "modules", module)?,
                "types" => f.types = list(items(), "types", kind)?,
                "pids" => f.pids = list(items(), "pids", |s| number(s, "pids"))?,
                "uids" => f.uids = list(items(), "uids", |s| number(s, "uids"))?,
                "max_rate" => f.max_rate = number(v, "max_rate")?,
                _ => {}
            }
        }
        Ok(f)
    }

    /// Parses the `filter` object of a subscribe frame.
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("filter must be an object, got {}", type_name(v)))?;
        let mut f = Self::default();
        for (k, v) in obj {
            match k.as_str() {
                "modules" => {
                    f.modules = json_list(v, "modules", |x| module(json_str(x, "modules")?))?
                }
                "types" => f.types = json_list(v, "types", |x| kind(json_str(x, "types")?))?,
                "pids" => f.pids = json_list(v, "pids", |x| json_u32(x, "pids"))?,
                "uids" => f.uids = json_list(v, "uids", |x| json_u32(x, "uids"))?,
                "max_rate" => f.max_rate = json_u32(v, "max_rate")?,
                other => {
                    return Err(format!(
                        "unknown filter key {other:?} (known: modules, pids, uids, types, max_rate)"
                    ));
                }
            }
        }
        Ok(f)
    }
}

/// Whether a `types` list takes events of `kind`: a list naming it, or an
/// empty list for every kind but [`EventKind::Packet`] (asked for by name).
pub fn kind_wanted(types: &[EventKind], kind: EventKind) -> bool {
    if types.is_empty() {
        kind != EventKind::Packet
    } else {
        types.contains(&kind)
    }
}

fn list<T>(
    items: impl Iterator<Item = impl AsRef<str>>,
    field: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let v = items
        .map(|s| parse(s.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    if v.len() > MAX_LIST {
        return Err(format!("{field}: {} items, at most {MAX_LIST}", v.len()));
    }
    Ok(v)
}

fn module(s: &str) -> Result<Module, String> {
    Module::from_name(s).ok_or_else(|| {
        let known: Vec<_> = Module::ALL.iter().map(|m| m.name()).collect();
        format!(
            "modules: unknown module {s:?} (known: {})",
            known.join(", ")
        )
    })
}

fn kind(s: &str) -> Result<EventKind, String> {
    EventKind::from_name(s).ok_or_else(|| {
        let known: Vec<_> = EventKind::ALL.iter().map(|k| k.name()).collect();
        format!("types: unknown type {s:?} (known: {})", known.join(", "))
    })
}

fn number(s: &str, field: &str) -> Result<u32, String> {
    s.parse()
        .map_err(|_| format!("{field}: {s:?} is not a number from 0 to {}", u32::MAX))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn json_list<T>(
    v: &Value,
    field: &str,
    parse: impl Fn(&Value) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let arr = v
        .as_array()
        .ok_or_else(|| format!("{field} must be an array, got {}", type_name(v)))?;
    if arr.len() > MAX_LIST {
        return Err(format!("{field}: {} items, at most {MAX_LIST}", arr.len()));
    }
    arr.iter().map(parse).collect()
}

fn json_str<'a>(v: &'a Value, field: &str) -> Result<&'a str, String> {
    v.as_str()
        .ok_or_else(|| format!("{field} items must be strings, got {}", type_name(v)))
}

/// A JSON number that fits u32.
pub fn json_u32(v: &Value, field: &str) -> Result<u32, String> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| match v {
            Value::Number(n) => format!("{field}: {n} is out of range 0..={}", u32::MAX),
            other => format!("{field} must be a number, got {}", type_name(other)),
        })
}

/// Parses a subscribe text frame: `Ok(filter)` or the error message.
pub fn parse_subscribe(text: &str) -> Result<ClientFilter, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj: &Map<String, Value> = v
        .as_object()
        .ok_or_else(|| format!("message must be an object, got {}", type_name(&v)))?;
    match obj.get("op").and_then(Value::as_str) {
        Some("subscribe") => {}
        Some(op) => return Err(format!("unknown op {op:?} (known: subscribe)")),
        None => return Err("missing \"op\" (expected \"subscribe\")".into()),
    }
    match obj.get("filter") {
        Some(f) => ClientFilter::from_json(f),
        None => Ok(ClientFilter::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_json_agree() {
        let q = ClientFilter::from_query(
            "modules=tls,bash&pids=1234,99&uids=0&types=data,masterkey&max_rate=5000&token=x",
        )
        .unwrap();
        let j = parse_subscribe(r#"{"op":"subscribe","filter":{"modules":["tls","bash"],"pids":[1234,99],"uids":[0],"types":["data","masterkey"],"max_rate":5000}}"#).unwrap();
        assert_eq!(q, j);
        assert_eq!(ClientFilter::from_json(&q.to_json()).unwrap(), q);
    }

    /// Packets go only to a filter that names them; an empty one takes
    /// every other kind.
    #[test]
    fn packets_only_when_asked() {
        for k in EventKind::ALL {
            assert_eq!(kind_wanted(&[], k), k != EventKind::Packet, "{k:?}");
        }
        assert!(kind_wanted(&[EventKind::Packet], EventKind::Packet));
        assert!(!kind_wanted(&[EventKind::Packet], EventKind::Data));
        let f = ClientFilter::from_query("types=packet,conn").unwrap();
        assert_eq!(f.types, [EventKind::Packet, EventKind::Conn]);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            ClientFilter::from_query("modules=ssh").unwrap_err(),
            "modules: unknown module \"ssh\" (known: tls, gnutls, nss, gotls, bash, mysqld, postgres)"
        );
        assert!(
            ClientFilter::from_query("pids=-1")
                .unwrap_err()
                .starts_with("pids: ")
        );
        assert_eq!(
            parse_subscribe(r#"{"op":"subscribe","filter":{"pids":"1"}}"#).unwrap_err(),
            "pids must be an array, got a string"
        );
        assert_eq!(
            parse_subscribe(r#"{"op":"subscribe","filter":{"max_rate":-5}}"#).unwrap_err(),
            "max_rate: -5 is out of range 0..=4294967295"
        );
        assert!(
            parse_subscribe("{")
                .unwrap_err()
                .starts_with("invalid JSON")
        );
        assert_eq!(
            parse_subscribe(r#"{"op":"x"}"#).unwrap_err(),
            "unknown op \"x\" (known: subscribe)"
        );
        assert!(
            parse_subscribe(r#"{"op":"subscribe","filter":{"colour":1}}"#)
                .unwrap_err()
                .contains("colour")
        );
    }
}
