//! The pcapng output end to end with synthetic events: block order (secrets
//! before the packets they came after), timestamp order across workers,
//! the hold, rotation, and the files read back block by block and, where
//! installed, by capinfos.

use rcapture_core::event::{Clock, Detail, EventFields, EventKind};
use rcapture_core::records::{DIR_RECV, DIR_SEND};
use rcapture_core::worker::EventSink;
use rcapture_net::eventfile::rotate::rotated_path;
use rcapture_net::pcapng::block::{DSB, EPB, FLAG_INBOUND, FLAG_OUTBOUND, IDB, SHB};
use rcapture_net::pcapng::{PcapConfig, PcapInterface, PcapOutput};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rcapture-pcapng-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ifaces() -> Vec<PcapInterface> {
    vec![
        PcapInterface {
            name: "lo".into(),
            ifindex: 1,
        },
        PcapInterface {
            name: "eth0".into(),
            ifindex: 7,
        },
    ]
}

/// Unix nanoseconds now on the clock the output is given.
fn now(clock: &Clock) -> i64 {
    clock.to_unix_ns(rcapture_core::sys::clock_ns(libc::CLOCK_BOOTTIME) as u64)
}

fn packet(
    sink: &mut dyn EventSink,
    ts: i64,
    ifindex: u32,
    dir: u8,
    pid: i64,
    data: &[u8],
    truncated: u32,
) {
    let ev = EventFields {
        timestamp: ts,
        pid,
        pname: if pid != 0 { "curl" } else { "" },
        payload: data,
        truncated,
        module: "tls",
        detail: Detail::Packet {
            ifindex,
            direction: dir,
        },
        ..EventFields::default()
    };
    sink.event(&ev, EventKind::Packet);
}

fn secret(sink: &mut dyn EventSink, text: &[u8]) {
    let ev = EventFields {
        payload: text,
        module: "tls",
        ..EventFields::default()
    };
    sink.event(&ev, EventKind::MasterKey);
}

/// A pcapng block.
#[derive(Debug, Clone)]
struct Block {
    kind: u32,
    body: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn blocks(path: &Path) -> Vec<Block> {
    let b = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let kind = u32_at(&b, at);
        let len = u32_at(&b, at + 4) as usize;
        assert!(
            len >= 12 && len.is_multiple_of(4) && at + len <= b.len(),
            "block at {at}"
        );
        assert_eq!(
            u32_at(&b, at + len - 4) as usize,
            len,
            "trailing length at {at}"
        );
        out.push(Block {
            kind,
            body: b[at + 8..at + len - 4].to_vec(),
        });
        at += len;
    }
    out
}

/// An EPB: (interface, ts, data, orig_len, flags, comment).
fn epb(b: &Block) -> (u32, u64, Vec<u8>, u32, u32, String) {
    let body = &b.body;
    let ts = (u64::from(u32_at(body, 4)) << 32) | u64::from(u32_at(body, 8));
    let cap = u32_at(body, 12) as usize;
    let data = body[20..20 + cap].to_vec();
    let mut at = 20 + cap.div_ceil(4) * 4;
    let (mut flags, mut comment) = (0, String::new());
    while at + 4 <= body.len() {
        let code = u16::from_le_bytes([body[at], body[at + 1]]);
        let len = u16::from_le_bytes([body[at + 2], body[at + 3]]) as usize;
        let v = &body[at + 4..at + 4 + len];
        match code {
            0 => break,
            1 => comment = String::from_utf8(v.to_vec()).unwrap(),
            2 => flags = u32_at(v, 0),
            _ => {}
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    (u32_at(body, 0), ts, data, u32_at(body, 16), flags, comment)
}

fn dsb_text(b: &Block) -> String {
    assert_eq!(u32_at(&b.body, 0), 0x544c_534b);
    let n = u32_at(&b.body, 4) as usize;
    String::from_utf8(b.body[8..8 + n].to_vec()).unwrap()
}

fn capinfos_count(path: &Path) -> Option<u64> {
    let out = std::process::Command::new("capinfos")
        .args(["-M", "-c"])
        .arg(path)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "capinfos: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    let n = s
        .lines()
        .find_map(|l| l.strip_prefix("Number of packets:"))?;
    n.trim().parse().ok()
}

/// Secrets that arrive after a session's first packets are written before
/// them; packets of two workers come out in timestamp order, each with its
/// interface, direction, original length and process.
#[test]
fn secrets_precede_the_packets_held_before_them() {
    let dir = tmp("order");
    let path = dir.join("cap.pcapng");
    let clock = Clock::from_offset(1_700_000_000_000_000_000);
    let mut cfg = PcapConfig::new(&path, ifaces(), 1000);
    cfg.clock = clock;
    cfg.hold = Duration::from_secs(30);
    let mut out = PcapOutput::start(cfg, 2).unwrap();
    let t = now(&clock);
    let mut sinks = std::mem::take(&mut out.sinks);
    let (a, b) = sinks.split_at_mut(1);
    let (w0, w1) = (a[0].as_mut(), b[0].as_mut());
    packet(w0, t, 1, DIR_SEND, 42, b"client hello", 0);
    packet(w1, t + 1, 7, DIR_RECV, 0, b"server hello", 100);
    w1.flush();
    w0.flush();
    packet(w0, t + 2, 1, DIR_SEND, 42, b"application data", 0);
    w0.flush();
    // The secrets come last, from the other worker; one line twice.
    secret(w1, b"CLIENT_RANDOM 00 11\nCLIENT_RANDOM 00 11\n");
    w1.flush();
    std::thread::sleep(Duration::from_millis(200));
    drop(sinks);
    let stats = out.finish().unwrap();
    assert_eq!(
        (stats.packets, stats.packets_written, stats.packets_dropped),
        (3, 3, 0)
    );
    assert_eq!(
        (
            stats.secrets,
            stats.secret_lines_written,
            stats.duplicate_lines
        ),
        (1, 1, 1)
    );

    let bl = blocks(&path);
    let kinds: Vec<u32> = bl.iter().map(|b| b.kind).collect();
    assert_eq!(kinds, [SHB, IDB, IDB, DSB, EPB, EPB, EPB]);
    assert_eq!(dsb_text(&bl[3]), "CLIENT_RANDOM 00 11\n");
    let e: Vec<_> = bl[4..].iter().map(epb).collect();
    let ts = t as u64;
    assert_eq!(
        e[0],
        (
            0,
            ts,
            b"client hello".to_vec(),
            12,
            FLAG_OUTBOUND,
            "pid=42 comm=curl".into()
        )
    );
    assert_eq!(
        e[1],
        (
            1,
            ts + 1,
            b"server hello".to_vec(),
            112,
            FLAG_INBOUND,
            String::new()
        )
    );
    assert_eq!(e[2].2, b"application data");
    if let Some(n) = capinfos_count(&path) {
        assert_eq!(n, 3);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A packet is written once held for the hold time, while running.
#[test]
fn packets_are_written_after_the_hold() {
    let dir = tmp("hold");
    let path = dir.join("cap.pcapng");
    let mut cfg = PcapConfig::new(&path, ifaces(), 1000);
    cfg.hold = Duration::from_millis(100);
    let clock = cfg.clock;
    let mut out = PcapOutput::start(cfg, 1).unwrap();
    packet(out.sinks[0].as_mut(), now(&clock), 1, DIR_SEND, 1, b"x", 0);
    out.sinks[0].flush();
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(
        out.stats.snapshot().packets_written,
        0,
        "written before its hold"
    );
    let t0 = std::time::Instant::now();
    while out.stats.snapshot().packets_written == 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "never written");
        std::thread::sleep(Duration::from_millis(10));
    }
    let kinds: Vec<u32> = blocks(&path).iter().map(|b| b.kind).collect();
    assert_eq!(kinds, [SHB, IDB, IDB, EPB]);
    out.finish().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// With a size limit every file is a valid pcapng of its own: SHB, IDBs,
/// the secrets seen so far, then packets; none is lost or repeated.
#[test]
fn rotated_files_each_start_with_headers_and_secrets() {
    let dir = tmp("rotate");
    let path = dir.join("cap.pcapng");
    let mut cfg = PcapConfig::new(&path, ifaces(), 2000);
    cfg.max_bytes = 20_000;
    cfg.hold = Duration::ZERO;
    let clock = cfg.clock;
    let mut out = PcapOutput::start(cfg, 1).unwrap();
    let s = out.sinks[0].as_mut();
    secret(s, b"CLIENT_RANDOM 01 02\n");
    s.flush();
    let t = now(&clock);
    for i in 0..100u32 {
        let data = vec![i as u8; 1000];
        packet(s, t + i64::from(i), 1, DIR_SEND, 9, &data, 0);
        if i % 10 == 9 {
            s.flush();
        }
    }
    drop(std::mem::take(&mut out.sinks));
    let stats = out.finish().unwrap();
    assert!(stats.files_rotated >= 4, "{stats:?}");
    assert_eq!(stats.packets_written, 100);
    let mut seen = Vec::new();
    let n = stats.files_rotated as usize;
    for k in (0..=n).rev() {
        let f = rotated_path(&path, k);
        let bl = blocks(&f);
        assert!(
            std::fs::metadata(&f).unwrap().len() <= 20_000 + 2000,
            "{f:?}"
        );
        assert_eq!(
            [bl[0].kind, bl[1].kind, bl[2].kind, bl[3].kind],
            [SHB, IDB, IDB, DSB]
        );
        assert_eq!(dsb_text(&bl[3]), "CLIENT_RANDOM 01 02\n");
        let epbs: Vec<_> = bl.iter().filter(|b| b.kind == EPB).map(epb).collect();
        if let Some(c) = capinfos_count(&f) {
            assert_eq!(c as usize, epbs.len());
        }
        seen.extend(epbs.into_iter().map(|e| e.2[0]));
    }
    assert_eq!(seen, (0..100u8).collect::<Vec<_>>());
    std::fs::remove_dir_all(&dir).ok();
}
