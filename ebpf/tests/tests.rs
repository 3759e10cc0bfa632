//! Integration tests of the BPF probes against real programs (root only).

mod openssl;
mod testutil;
