//! Integration tests of the BPF probes against real programs (root only).

mod conn;
mod openssl;
mod testutil;
