//! Forwarding of events to collectors (WIRE.md §5).

pub mod config;
