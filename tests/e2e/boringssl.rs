//! BoringSSL: `rcapture tls --libssl` against a client and a server
//! (tests/support/ossl_peer.c) built with the BoringSSL of the boring-sys
//! 5.4.0 crate, as shared libraries built once into a cache outside the
//! clone (`ebpf/tools/build-boringssl.sh`, `/var/cache/rcapture/boringssl`).
//! The OpenSSL matrix's checks (tests/e2e/openssl_matrix.rs), per TLS 1.2 /
//! 1.3: `BoringSSL` as the version on the start-up line and in `/status`,
//! no note, the marker in both directions (client: SSL_write/SSL_read,
//! server: SSL_read/SSL_write) with pid, comm and fd, secrets containing the
//! client's own key-log callback lines (TLS 1.3: the handshake traffic
//! secrets too, read when its handshake ends), nothing skipped, and a key
//! log with which tshark decrypts a capture of the session (and nothing
//! without).

use crate::openssl_matrix::{Build, matrix_case, run_build_script};

/// The cached BoringSSL build (built by the script when missing: it needs
/// cmake, ninja-build and g++).
fn boringssl_build() -> Build {
    let root = run_build_script(
        "build-boringssl.sh",
        &[],
        "BoringSSL (needs cmake, ninja-build, g++)",
        "RCAPTURE_BORINGSSL_CACHE",
        "/var/cache/rcapture/boringssl",
    );
    let libssl = root.join("lib/libssl.so");
    assert!(
        libssl.exists(),
        "{} after ebpf/tools/build-boringssl.sh",
        libssl.display()
    );
    Build {
        version: "BoringSSL".into(),
        include: root.join("include"),
        lib: root.join("lib"),
        libssl,
        flags: Vec::new(),
        note: None,
    }
}

#[test]
fn boringssl_boring_sys_5_4_0() {
    matrix_case("boringssl_boring_sys_5_4_0", boringssl_build);
}
