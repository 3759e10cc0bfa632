//! In-process tests of the event server (WIRE.md §3, §4, §6): a real
//! `rcapture_net::Server` on `127.0.0.1:0`, synthetic events through its
//! `Publisher`s, and real sockets (raw HTTP, raw and tungstenite WebSocket).

mod access;
mod api;
mod backlog;
mod config_checks;
mod deflate_load;
mod ecaptureq;
mod fanout;
mod forward_live;
mod http_input;
mod stream;
mod strict_http;
mod strict_ws;
mod util;
mod web;
