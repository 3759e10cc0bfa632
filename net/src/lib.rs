//! rcapture's event server: one mio event loop serving the WebSocket event
//! stream (eCaptureQ-compatible), the HTTP config API, `/status` and
//! Prometheus `/metrics` (WIRE.md §3, §4, §6).
//!
//! Workers publish encoded entries through [`publish::Publisher`]s (one per
//! worker); the loop shares each encoded entry with every client that wants
//! it, adding only a per-client frame header and `seq` prefix.
//!
//! ```
//! use rcapture_net::filter::ClientFilter;
//! let f = ClientFilter::from_query("modules=tls&types=data&max_rate=100").unwrap();
//! assert_eq!(f.to_json()["max_rate"], 100);
//! ```

pub mod access;
pub mod api;
pub mod config;
pub mod conn;
pub mod control;
pub mod ecaptureq;
pub mod entry;
pub mod eventfile;
pub mod filter;
pub mod forward;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod pace;
pub mod pcapng;
pub mod peer;
pub mod pid_labels;
pub mod publish;
pub mod server;
pub mod web;
pub mod ws;

pub use hub::{Hub, HubConfig, HubHandle};
pub use server::{Limits, Server, ServerConfig, ServerHandle};
