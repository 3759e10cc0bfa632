//! Integration tests of the BPF probes against real programs (root only).

mod nss;
mod openssl;
mod testutil;
