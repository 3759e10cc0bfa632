//! Integration tests of the BPF probes against real programs (root only).

mod gotls;
mod openssl;
mod testutil;
