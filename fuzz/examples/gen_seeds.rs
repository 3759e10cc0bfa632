//! Writes the committed seed corpora under `fuzz/seeds/<target>/` from `rcapture_core::synth`.
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds`.

use rcapture_core::records::{RecordKind, Tuple};
use rcapture_core::synth;
use std::path::Path;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    std::fs::create_dir_all(&dir).expect("create seed dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

/// Deterministic pseudo-random bytes (xorshift), for the `arbitrary`-driven targets.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn main() {
    let v4 = synth::tuple(
        "10.0.0.1:52814".parse().unwrap(),
        "10.0.0.2:443".parse().unwrap(),
    );
    let v6 = synth::tuple(
        "[2001:db8::1]:4000".parse().unwrap(),
        "[::1]:8443".parse().unwrap(),
    );
    let h = |k| synth::header(k, 4242, 4243, 1000, "curl", 1_000_000);
    let body = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let d = |k, t| synth::data(h(k), 5, 1, 0xffff_8880_0000_0001, t);
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("tls_v4", synth::single(d(RecordKind::TlsData, v4), body)),
        ("tls_v6", synth::single(d(RecordKind::TlsData, v6), body)),
        (
            "gnutls_unknown",
            synth::single(d(RecordKind::GnutlsData, Tuple::default()), body),
        ),
        ("nss_empty", synth::single(d(RecordKind::NssData, v4), b"")),
        ("gotls", synth::single(d(RecordKind::GotlsData, v6), body)),
        (
            "bash",
            synth::single(synth::bash(h(RecordKind::Bash), 0, 0), b"ls -la"),
        ),
        (
            "mysql",
            synth::single(synth::query(h(RecordKind::MysqlQuery), -1), b"SELECT 1"),
        ),
        (
            "pg",
            synth::single(synth::query(h(RecordKind::PgQuery), 0), b"SELECT 1"),
        ),
        (
            "packet",
            synth::single(synth::packet(h(RecordKind::Packet), 2, 0), &[0x45; 60]),
        ),
        ("conn", synth::conn(h(RecordKind::Conn), 5, 0, 1, v4)),
        (
            "ms12",
            synth::master_secret(h(RecordKind::MasterSecret), 0x0303, 0x0300_c02f, [1; 32], 9),
        ),
        (
            "ms13",
            synth::master_secret(h(RecordKind::MasterSecret), 0x0304, 0x0300_1301, [2; 32], 9),
        ),
        (
            "ms13_384",
            synth::master_secret(h(RecordKind::MasterSecret), 0x0304, 0x0300_1302, [3; 32], 9),
        ),
        (
            "gnutls_secret12",
            synth::gnutls_secret(h(RecordKind::GnutlsSecret), 0x0303, 48, [6; 32], 9, false),
        ),
        (
            "gnutls_secret13",
            synth::gnutls_secret(h(RecordKind::GnutlsSecret), 0x0304, 48, [7; 32], 9, true),
        ),
        (
            "gokey",
            synth::gotls_key(h(RecordKind::GotlsKey), "CLIENT_RANDOM", [4; 32], &[5; 48]),
        ),
    ];
    for (name, raw) in &seeds {
        write("decode_record", name, raw);
    }
    // A middle and a last record of a multi-record call.
    let mut parts = Vec::new();
    synth::split_call(
        d(RecordKind::TlsData, v4),
        &[7; 300],
        1,
        128,
        usize::MAX,
        &mut parts,
    );
    write("decode_record", "split_mid", &parts[1]);
    write("decode_record", "split_last", &parts[2]);

    for (name, text) in [
        ("v4", "10.0.0.1:443-10.0.0.2:55555"),
        ("v6", "[2001:db8::1]:443-[::1]:8443"),
        ("unknown", "0.0.0.0:0-0.0.0.0:0"),
        ("mixed", "[::ffff:1.2.3.4]:1-1.2.3.4:2"),
        ("scoped", "[fe80::1%2]:80-[fe80::2%2]:81"),
        ("bad_v6", "::1:80-::2:81"),
    ] {
        write("tuple_parse", name, text.as_bytes());
    }
    for (i, len) in [16usize, 64, 256, 1024].into_iter().enumerate() {
        write(
            "join_records",
            &format!("noise_{len}"),
            &noise(i as u64 + 1, len),
        );
        write(
            "encode_roundtrip",
            &format!("noise_{len}"),
            &noise(i as u64 + 11, len),
        );
    }
}
