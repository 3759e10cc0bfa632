//! NSS key log lines (WIRE.md §7) from OpenSSL 3.0, GnuTLS and Go secret records.
//!
//! TLS 1.2: `CLIENT_RANDOM <random> <master secret>`. TLS 1.3: the handshake
//! traffic secrets are derived with HKDF-Expand-Label from the handshake
//! secret and transcript hash (RFC 8446 §7.1, OPENSSL-3.0.md); the
//! application traffic and exporter secrets are the stored arrays (BoringSSL
//! records carry the handshake traffic secrets themselves). GnuTLS
//! stores every TLS 1.3 secret itself: its lines are the stored arrays.
//! All-zero secrets are skipped. Nothing here allocates beyond `out`'s capacity
//! (the duplicate filter sizes its tables once, when made).

use crate::records::{GnutlsSecretRecord, GoTlsKeyRecord, MS_HS_TRAFFIC, MasterSecretRecord};
use hkdf::Hkdf;
use sha2::{Sha256, Sha384};
use std::hash::{BuildHasher, RandomState};

/// Upper bound of the key log text of one record: six TLS 1.3 lines (GnuTLS
/// with 0-RTT) of at most 31 + 1 + 64 + 1 + 96 + 1 = 194 bytes.
pub const MAX_KEYLOG_BYTES: usize = 1280;

/// `SSL3_VERSION`-style wire version of TLS 1.3.
pub const TLS1_3_VERSION: u32 = 0x0304;

/// Appends the key log lines of an OpenSSL or BoringSSL secret record to `out`.
pub fn master_secret_lines(m: &MasterSecretRecord, out: &mut Vec<u8>) {
    if m.version < TLS1_3_VERSION {
        let key = &m.master_key[..(m.master_key_len as usize).min(48)];
        push_line(out, b"CLIENT_RANDOM", &m.client_random, key);
        return;
    }
    let l = tls13_hash_len(m.cipher_id);
    let hs = &m.handshake_secret[..l];
    let hash = &m.handshake_traffic_hash[..l];
    if m.hs_form == MS_HS_TRAFFIC {
        // BoringSSL: the handshake traffic secrets themselves.
        push_line(
            out,
            b"CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            &m.client_random,
            hs,
        );
        push_line(
            out,
            b"SERVER_HANDSHAKE_TRAFFIC_SECRET",
            &m.client_random,
            hash,
        );
    } else {
        let mut derived = [0u8; 48];
        for (label, hkdf_label) in [
            (
                &b"CLIENT_HANDSHAKE_TRAFFIC_SECRET"[..],
                &b"c hs traffic"[..],
            ),
            (b"SERVER_HANDSHAKE_TRAFFIC_SECRET", b"s hs traffic"),
        ] {
            if !is_zero(hs) && expand_label(hs, hkdf_label, hash, &mut derived[..l]) {
                push_line(out, label, &m.client_random, &derived[..l]);
            }
        }
    }
    push_line(
        out,
        b"CLIENT_TRAFFIC_SECRET_0",
        &m.client_random,
        &m.client_app_traffic_secret[..l],
    );
    push_line(
        out,
        b"SERVER_TRAFFIC_SECRET_0",
        &m.client_random,
        &m.server_app_traffic_secret[..l],
    );
    push_line(
        out,
        b"EXPORTER_SECRET",
        &m.client_random,
        &m.exporter_master_secret[..l],
    );
}

/// Appends the key log lines of a GnuTLS secret record to `out`: TLS 1.3
/// (version 0x0304) the stored traffic and exporter secrets (the first
/// `hash_len` bytes of each; none if the hash is unknown), the early
/// traffic secret only when set (0-RTT); other versions (TLS 1.0–1.2,
/// DTLS) `CLIENT_RANDOM`.
pub fn gnutls_secret_lines(g: &GnutlsSecretRecord, out: &mut Vec<u8>) {
    if g.version != TLS1_3_VERSION {
        push_line(out, b"CLIENT_RANDOM", &g.client_random, &g.master_secret);
        return;
    }
    let l = g.hash_len as usize;
    if l != 32 && l != 48 {
        return;
    }
    for (label, secret) in [
        (&b"CLIENT_EARLY_TRAFFIC_SECRET"[..], &g.early_secret),
        (b"CLIENT_HANDSHAKE_TRAFFIC_SECRET", &g.client_hs),
        (b"SERVER_HANDSHAKE_TRAFFIC_SECRET", &g.server_hs),
        (b"CLIENT_TRAFFIC_SECRET_0", &g.client_ap),
        (b"SERVER_TRAFFIC_SECRET_0", &g.server_ap),
        (b"EXPORTER_SECRET", &g.exporter),
    ] {
        push_line(out, label, &g.client_random, &secret[..l]);
    }
}

/// Appends the key log line of a Go `writeKeyLog` call to `out`.
pub fn gotls_line(k: &GoTlsKeyRecord, out: &mut Vec<u8>) {
    let label = &k.label[..(k.label_len as usize).min(k.label.len())];
    let secret = &k.secret[..(k.secret_len as usize).min(k.secret.len())];
    if label
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
    {
        push_line(out, label, &k.client_random, secret);
    }
}

/// TLS 1.3 hash length from the cipher id: SHA-384 for TLS_AES_256_GCM_SHA384.
pub fn tls13_hash_len(cipher_id: u32) -> usize {
    if cipher_id & 0xFFFF == 0x1302 { 48 } else { 32 }
}

/// HKDF-Expand-Label(secret, label, context, out.len()) with the hash picked
/// by the secret's length (32 → SHA-256, 48 → SHA-384).
pub fn expand_label(secret: &[u8], label: &[u8], context: &[u8], out: &mut [u8]) -> bool {
    let mut info = [0u8; 2 + 1 + 6 + 32 + 1 + 64];
    let full_label_len = 6 + label.len();
    if label.len() > 32 || context.len() > 64 || out.len() > u16::MAX as usize {
        return false;
    }
    info[..2].copy_from_slice(&(out.len() as u16).to_be_bytes());
    info[2] = full_label_len as u8;
    info[3..9].copy_from_slice(b"tls13 ");
    info[9..9 + label.len()].copy_from_slice(label);
    let mut n = 9 + label.len();
    info[n] = context.len() as u8;
    n += 1;
    info[n..n + context.len()].copy_from_slice(context);
    n += context.len();
    let info = &info[..n];
    match secret.len() {
        32 => Hkdf::<Sha256>::from_prk(secret).is_ok_and(|h| h.expand(info, out).is_ok()),
        48 => Hkdf::<Sha384>::from_prk(secret).is_ok_and(|h| h.expand(info, out).is_ok()),
        _ => false,
    }
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

fn push_line(out: &mut Vec<u8>, label: &[u8], random: &[u8], secret: &[u8]) {
    if secret.is_empty() || is_zero(secret) || is_zero(random) {
        return;
    }
    out.extend_from_slice(label);
    out.push(b' ');
    push_hex(out, random);
    out.push(b' ');
    push_hex(out, secret);
    out.push(b'\n');
}

/// Appends lower-case hex.
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// `(label, client_random_hex)` of each line of key log text.
pub fn line_keys(text: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    text.split(|&b| b == b'\n').filter_map(|line| {
        let mut parts = line.splitn(3, |&b| b == b' ');
        let label = parts.next()?;
        let random = parts.next()?;
        parts.next()?;
        Some((label, random))
    })
}

/// Distinct (label, client random) pairs the key log remembers.
pub const DEDUPE_ENTRIES: usize = 8192;

/// The key log's duplicate filter: the last [`DEDUPE_ENTRIES`] distinct
/// (label, client random) pairs written, as 64-bit hashes (randomly keyed
/// SipHash) in a fixed ring (oldest forgotten first) indexed by a fixed
/// open-addressing table. Sized once; filtering allocates nothing beyond
/// `out`'s capacity.
#[derive(Debug)]
pub struct KeylogDedupe {
    hasher: RandomState,
    /// Linear probing, twice the ring's size; 0 = empty.
    table: Box<[u64]>,
    /// Insertion order; the next slot to (over)write is `next`.
    ring: Box<[u64]>,
    next: usize,
    len: usize,
}

impl Default for KeylogDedupe {
    fn default() -> Self {
        Self::new()
    }
}

impl KeylogDedupe {
    /// An empty filter of [`DEDUPE_ENTRIES`] pairs.
    pub fn new() -> Self {
        Self::with_entries(DEDUPE_ENTRIES)
    }

    /// An empty filter remembering `entries` pairs (at least 1).
    pub fn with_entries(entries: usize) -> Self {
        let entries = entries.max(1);
        Self {
            hasher: RandomState::new(),
            table: vec![0; (entries * 2).next_power_of_two()].into_boxed_slice(),
            ring: vec![0; entries].into_boxed_slice(),
            next: 0,
            len: 0,
        }
    }

    /// Appends to `out` the lines of key log text `text` whose pair was not
    /// seen recently (remembering them); returns how many were left out.
    /// Lines that are not `LABEL RANDOM SECRET` are left out uncounted.
    pub fn filter(&mut self, text: &[u8], out: &mut Vec<u8>) -> u64 {
        let mut dup = 0;
        for l in text.split_inclusive(|&b| b == b'\n') {
            let Some((label, random)) = line_keys(l).next() else {
                continue;
            };
            if self.insert(self.hasher.hash_one((label, random))) {
                out.extend_from_slice(l);
            } else {
                dup += 1;
            }
        }
        dup
    }

    fn mask(&self) -> usize {
        self.table.len() - 1
    }

    fn home(&self, h: u64) -> usize {
        h as usize & self.mask()
    }

    /// The table index of `h`, or of the empty slot where it would go.
    fn find(&self, h: u64) -> usize {
        let mut i = self.home(h);
        while self.table[i] != 0 && self.table[i] != h {
            i = (i + 1) & self.mask();
        }
        i
    }

    /// Remembers `h`; `false` if it was already remembered.
    fn insert(&mut self, h: u64) -> bool {
        let h = h.max(1);
        if self.table[self.find(h)] == h {
            return false;
        }
        if self.len == self.ring.len() {
            self.remove(self.ring[self.next]);
        } else {
            self.len += 1;
        }
        let i = self.find(h);
        self.table[i] = h;
        self.ring[self.next] = h;
        self.next = (self.next + 1) % self.ring.len();
        true
    }

    /// Deletes `h` from the table, shifting back the entries after it so
    /// that every entry stays reachable from its home slot.
    fn remove(&mut self, h: u64) {
        let mut hole = self.find(h);
        if self.table[hole] != h {
            return;
        }
        let mut j = hole;
        loop {
            self.table[hole] = 0;
            loop {
                j = (j + 1) & self.mask();
                let e = self.table[j];
                if e == 0 {
                    return;
                }
                let k = self.home(e);
                // `e` may stay at j if its home lies cyclically in (hole, j].
                let stays = if hole <= j {
                    hole < k && k <= j
                } else {
                    hole < k || k <= j
                };
                if !stays {
                    self.table[hole] = e;
                    hole = j;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a reference model (a FIFO of the last N distinct keys),
    /// with few home slots so that probing, wrap-around and shifting back
    /// are all exercised.
    #[test]
    fn dedupe_remembers_exactly_the_last_entries() {
        let n = 37;
        let mut d = KeylogDedupe::with_entries(n);
        let mut model: std::collections::VecDeque<u64> = Default::default();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct values, many sharing home slots.
            let h = 1 + (x % 120) * 64 + (x >> 60);
            let new = !model.contains(&h);
            assert_eq!(d.insert(h), new, "{h}");
            if new {
                if model.len() == n {
                    model.pop_front();
                }
                model.push_back(h);
            }
        }
    }

    #[test]
    fn dedupe_filters_lines_by_label_and_random() {
        let mut d = KeylogDedupe::with_entries(2);
        let mut out = Vec::new();
        let text = b"CLIENT_RANDOM aa 11\nCLIENT_RANDOM aa 22\nEXPORTER_SECRET aa 11\ngarbage\n";
        assert_eq!(d.filter(text, &mut out), 1);
        assert_eq!(out, b"CLIENT_RANDOM aa 11\nEXPORTER_SECRET aa 11\n");
        out.clear();
        // A third pair pushes the first out of a two-entry memory.
        assert_eq!(
            d.filter(b"CLIENT_RANDOM bb 11\nCLIENT_RANDOM aa 33\n", &mut out),
            0
        );
        assert_eq!(out, b"CLIENT_RANDOM bb 11\nCLIENT_RANDOM aa 33\n");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 8448 §3 (simple 1-RTT handshake), SHA-256: handshake secret and
    /// transcript hash → client/server handshake traffic secrets.
    #[test]
    fn rfc8448_handshake_traffic_secrets() {
        let hs = hex("1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac");
        let th = hex("860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8");
        let mut c = [0u8; 32];
        assert!(expand_label(&hs, b"c hs traffic", &th, &mut c));
        assert_eq!(
            c.to_vec(),
            hex("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21")
        );
        let mut s = [0u8; 32];
        assert!(expand_label(&hs, b"s hs traffic", &th, &mut s));
        assert_eq!(
            s.to_vec(),
            hex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
        );
    }

    #[test]
    fn gnutls_lines_by_version_and_hash() {
        let mut g: GnutlsSecretRecord = bytemuck::Zeroable::zeroed();
        g.client_random = [0xcd; 32];
        g.version = 0x0303;
        g.master_secret = [0x22; 48];
        g.client_hs = [0x33; 64]; // union garbage under TLS 1.2: ignored
        let mut out = Vec::new();
        gnutls_secret_lines(&g, &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            format!("CLIENT_RANDOM {} {}\n", "cd".repeat(32), "22".repeat(48))
        );
        g.version = 0x0304;
        g.hash_len = 32;
        g.server_hs = [0x44; 64];
        g.client_ap = [0x55; 64];
        g.server_ap = [0x66; 64];
        g.exporter = [0x77; 64];
        out.clear();
        gnutls_secret_lines(&g, &mut out);
        let cr = "cd".repeat(32);
        let want: String = [
            ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "33"),
            ("SERVER_HANDSHAKE_TRAFFIC_SECRET", "44"),
            ("CLIENT_TRAFFIC_SECRET_0", "55"),
            ("SERVER_TRAFFIC_SECRET_0", "66"),
            ("EXPORTER_SECRET", "77"),
        ]
        .iter()
        .map(|(l, b)| format!("{l} {cr} {}\n", b.repeat(32)))
        .collect();
        assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        // SHA-384, with 0-RTT: six lines of 48-byte secrets, the longest text.
        g.hash_len = 48;
        g.early_secret = [0x11; 64];
        out.clear();
        gnutls_secret_lines(&g, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(text.lines().count(), 6, "{text}");
        assert!(text.starts_with(&format!(
            "CLIENT_EARLY_TRAFFIC_SECRET {cr} {}\n",
            "11".repeat(48)
        )));
        assert!(out.len() <= MAX_KEYLOG_BYTES, "{}", out.len());
        // DTLS 1.2 (0xfefd) is above 0x0304 numerically: still CLIENT_RANDOM.
        g.version = 0xfefd;
        out.clear();
        gnutls_secret_lines(&g, &mut out);
        assert!(out.starts_with(b"CLIENT_RANDOM "), "{out:?}");
        g.version = 0x0304;
        // An unknown hash gives no TLS 1.3 line rather than wrong ones.
        g.hash_len = 0;
        out.clear();
        gnutls_secret_lines(&g, &mut out);
        assert!(out.is_empty());
    }

    /// BoringSSL's records: the handshake traffic secrets as they are (no
    /// derivation), the lines of a zero one left out (a record sent after
    /// the handshake, when they are gone).
    #[test]
    fn boringssl_handshake_traffic_secrets_are_stored() {
        let mut m: MasterSecretRecord = bytemuck::Zeroable::zeroed();
        m.version = TLS1_3_VERSION;
        m.cipher_id = 0x0300_1301;
        m.client_random = [0xab; 32];
        m.hs_form = MS_HS_TRAFFIC;
        m.handshake_secret[..32].fill(0x11);
        m.handshake_traffic_hash[..32].fill(0x22);
        m.client_app_traffic_secret[..32].fill(0x33);
        m.server_app_traffic_secret[..32].fill(0x44);
        m.exporter_master_secret[..32].fill(0x55);
        let mut out = Vec::new();
        master_secret_lines(&m, &mut out);
        let r = "ab".repeat(32);
        let want: String = [
            ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "11"),
            ("SERVER_HANDSHAKE_TRAFFIC_SECRET", "22"),
            ("CLIENT_TRAFFIC_SECRET_0", "33"),
            ("SERVER_TRAFFIC_SECRET_0", "44"),
            ("EXPORTER_SECRET", "55"),
        ]
        .iter()
        .map(|(l, b)| format!("{l} {r} {}\n", b.repeat(32)))
        .collect();
        assert_eq!(String::from_utf8(out).unwrap(), want);
        m.handshake_secret = [0; 64];
        m.handshake_traffic_hash = [0; 64];
        let mut out = Vec::new();
        master_secret_lines(&m, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("HANDSHAKE"), "{text}");
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn tls12_line_and_zero_skip() {
        let mut m: MasterSecretRecord = bytemuck::Zeroable::zeroed();
        m.version = 0x0303;
        m.client_random = [0xab; 32];
        m.master_key_len = 48;
        let mut out = Vec::new();
        master_secret_lines(&m, &mut out);
        assert!(out.is_empty(), "all-zero master key must be skipped");
        m.master_key = [0x11; 48];
        master_secret_lines(&m, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!("CLIENT_RANDOM {} {}\n", "ab".repeat(32), "11".repeat(48))
        );
    }
}
