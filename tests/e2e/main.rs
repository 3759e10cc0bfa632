//! End-to-end tests: the real `rcapture` binary against real TLS programs.
//!
//! They need root and BPF; without them they print why and skip, unless
//! `RCAPTURE_REQUIRE_BPF=1` (set by `.ci/run`), which turns a skip into a failure.

mod access;
mod bash;
mod boringssl;
mod discovery;
mod ecaptureq;
mod gnutls;
mod gotls;
mod modes;
mod mysqld;
mod nss;
mod openssl_matrix;
mod outputs;
mod overflow;
mod pcap;
mod postgres;
mod protocol;
mod queries;
mod readme;
mod server;
mod stall;
mod testutil;
mod tls;
mod web;
