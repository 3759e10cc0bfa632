//! Integration tests of the BPF probes against real programs (root only).

mod conn;
mod gotls;
mod mysqld;
mod nss;
mod openssl;
mod postgres;
mod testutil;
