//! Golden tests of WIRE.md §2: uuid, type, addresses, payload and module of
//! every record kind, tuple text and parsing (IPv4, IPv6, both directions).

use rcapture_core::decode::decode;
use rcapture_core::event::{Clock, EventFields, EventScratch, Module, comm, event_fields};
use rcapture_core::records::{DIR_RECV, DIR_SEND, FD_UNKNOWN, RecordKind, Tuple};
use rcapture_core::synth;
use rcapture_core::tuple::{Endpoint, TupleError, parse_tuple, write_tuple};

const BOOT_TS: u64 = 5_000_000_123;
const OFFSET: i64 = 1_764_133_700_000_000_000;

fn ev<R>(raw: &[u8], f: impl FnOnce(EventFields<'_>) -> R) -> R {
    let rec = decode(raw).expect("decodes");
    let mut s = EventScratch::new();
    f(event_fields(&rec, 0, &Clock::from_offset(OFFSET), &mut s))
}

fn hdr(kind: RecordKind) -> rcapture_core::records::RecordHeader {
    synth::header(kind, 4242, 4243, 1000, "curl", BOOT_TS)
}

fn v4() -> Tuple {
    synth::tuple(
        "127.0.0.1:52814".parse().unwrap(),
        "10.0.0.2:8443".parse().unwrap(),
    )
}

fn v6() -> Tuple {
    synth::tuple(
        "[::1]:52814".parse().unwrap(),
        "[2001:db8::2]:443".parse().unwrap(),
    )
}

#[test]
fn tls_send_uuid_tuple_and_addresses() {
    let raw = synth::single(
        synth::data(
            hdr(RecordKind::TlsData),
            5,
            DIR_SEND,
            0xffff_8880_1234_5678,
            v4(),
        ),
        b"GET / HTTP/1.1\r\n",
    );
    ev(&raw, |e| {
        assert_eq!(
            e.uuid,
            "sock:4242_4243_curl_5_1_127.0.0.1:52814-10.0.0.2:8443_18446612682375452280"
        );
        assert_eq!(
            (e.src_ip, e.src_port, e.dst_ip, e.dst_port),
            ("127.0.0.1", 52814, "10.0.0.2", 8443)
        );
        assert_eq!(
            (e.r#type, e.fd, e.pid, e.tid, e.uid),
            (1, 5, 4242, 4243, 1000)
        );
        assert_eq!((e.module, e.pname, e.length()), ("tls", "curl", 16));
        assert_eq!(e.timestamp, OFFSET + BOOT_TS as i64);
        assert_eq!(e.payload, b"GET / HTTP/1.1\r\n");
    });
}

#[test]
fn tls_recv_flows_remote_to_local() {
    let raw = synth::single(
        synth::data(hdr(RecordKind::TlsData), 5, DIR_RECV, 7, v4()),
        b"HTTP/1.1 200 OK",
    );
    ev(&raw, |e| {
        assert_eq!(
            e.uuid,
            "sock:4242_4243_curl_5_0_127.0.0.1:52814-10.0.0.2:8443_7"
        );
        assert_eq!(
            (e.src_ip, e.src_port, e.dst_ip, e.dst_port),
            ("10.0.0.2", 8443, "127.0.0.1", 52814)
        );
        assert_eq!(e.r#type, 0);
    });
}

#[test]
fn tls_ipv6_tuple_is_bracketed() {
    let raw = synth::single(
        synth::data(hdr(RecordKind::TlsData), 9, DIR_SEND, 0, v6()),
        b"x",
    );
    ev(&raw, |e| {
        assert_eq!(
            e.uuid,
            "sock:4242_4243_curl_9_1_[::1]:52814-[2001:db8::2]:443_0"
        );
        assert_eq!(
            (e.src_ip, e.src_port, e.dst_ip, e.dst_port),
            ("::1", 52814, "2001:db8::2", 443)
        );
    });
}

#[test]
fn tls_unknown_fd_and_tuple() {
    let raw = synth::single(
        synth::data(
            hdr(RecordKind::TlsData),
            FD_UNKNOWN,
            DIR_SEND,
            0,
            Tuple::default(),
        ),
        b"x",
    );
    ev(&raw, |e| {
        assert_eq!(e.uuid, "sock:4242_4243_curl_-1_1_0.0.0.0:0-0.0.0.0:0_0");
        assert_eq!(
            (e.src_ip, e.src_port, e.dst_ip, e.dst_port),
            ("127.0.0.1", 0, "127.0.0.1", 0)
        );
        assert_eq!(e.fd, 0);
    });
}

#[test]
fn gnutls_nss_gotls_uuid_and_module() {
    for (kind, module) in [
        (RecordKind::GnutlsData, "gnutls"),
        (RecordKind::NssData, "nss"),
        (RecordKind::GotlsData, "gotls"),
    ] {
        let raw = synth::single(
            synth::data(hdr(kind), 3, DIR_RECV, 0, Tuple::default()),
            b"hello",
        );
        ev(&raw, |e| {
            assert_eq!(e.uuid, "4242_4243_curl_0");
            assert_eq!(e.module, module);
            assert_eq!(
                (e.src_ip, e.dst_ip, e.src_port),
                ("127.0.0.1", "127.0.0.1", 0)
            );
        });
    }
    // A known connection gives real addresses for these modules too.
    let raw = synth::single(
        synth::data(hdr(RecordKind::GnutlsData), 3, DIR_SEND, 0, v4()),
        b"hi",
    );
    ev(&raw, |e| {
        assert_eq!((e.src_ip, e.dst_port), ("127.0.0.1", 8443))
    });
}

#[test]
fn bash_uuid_type() {
    let raw = synth::single(
        synth::bash(synth::header(RecordKind::Bash, 77, 77, 0, "bash", 1), 0, 0),
        b"ls -la",
    );
    ev(&raw, |e| {
        assert_eq!(
            (e.uuid, e.r#type, e.module, e.payload),
            ("77_0_bash", 0, "bash", &b"ls -la"[..])
        );
        assert_eq!(
            (e.src_ip, e.src_port, e.dst_ip, e.dst_port),
            ("127.0.0.1", 0, "127.0.0.1", 0)
        );
    });
}

#[test]
fn mysql_retval_sign_extended_and_postgres_zero() {
    let raw = synth::single(
        synth::query(
            synth::header(RecordKind::MysqlQuery, 10, 11, 0, "mariadbd", 1),
            -1,
        ),
        b"SELECT 1",
    );
    ev(&raw, |e| {
        assert_eq!(
            (e.uuid, e.r#type, e.module),
            ("10_mariadbd", u32::MAX, "mysqld")
        )
    });
    let raw = synth::single(
        synth::query(
            synth::header(RecordKind::MysqlQuery, 10, 11, 0, "mysqld", 1),
            0x1ff,
        ),
        b"x",
    );
    ev(&raw, |e| assert_eq!(e.r#type, u32::MAX));
    let raw = synth::single(
        synth::query(
            synth::header(RecordKind::PgQuery, 12, 12, 0, "postgres", 1),
            5,
        ),
        b"SELECT 2",
    );
    ev(&raw, |e| {
        assert_eq!((e.uuid, e.r#type, e.module), ("12_postgres", 0, "postgres"))
    });
}

#[test]
fn conn_and_packet() {
    let raw = synth::conn(hdr(RecordKind::Conn), 6, 0, 1, v6());
    ev(&raw, |e| {
        assert_eq!(
            (e.uuid, e.r#type, e.fd, e.module),
            ("4242_4243_curl_6", 0, 6, "tls")
        );
        assert_eq!(
            (e.src_ip, e.src_port, e.dst_ip, e.dst_port),
            ("::1", 52814, "2001:db8::2", 443)
        );
    });
    let raw = synth::single(
        synth::packet(
            synth::header(RecordKind::Packet, 0, 0, 0, "swapper/0", 1),
            1,
            0,
        ),
        &[0x45, 0, 0, 20],
    );
    ev(&raw, |e| {
        assert_eq!(
            (e.uuid, e.payload.len(), e.src_ip),
            ("0_1_swapper/0", 4, "127.0.0.1")
        );
    });
}

#[test]
fn master_secret_uuid_is_upper_hex_and_payload_is_keylog() {
    let mut cr = [0u8; 32];
    cr[0] = 0xab;
    cr[31] = 0x0c;
    let raw = synth::master_secret(hdr(RecordKind::MasterSecret), 0x0303, 0, cr, 0x11);
    ev(&raw, |e| {
        assert_eq!(e.uuid, format!("AB{}0C", "00".repeat(30)));
        assert_eq!(e.r#type, 0x0303);
        let text = std::str::from_utf8(e.payload).unwrap();
        assert_eq!(
            text,
            format!(
                "CLIENT_RANDOM ab{}0c {}\n",
                "00".repeat(30),
                "11".repeat(48)
            )
        );
        assert_eq!(
            (e.src_ip, e.src_port, e.dst_ip, e.dst_port),
            ("127.0.0.1", 0, "127.0.0.1", 0)
        );
    });
    for (cipher, len) in [(0x03001301, 32), (0x03001302, 48)] {
        let raw = synth::master_secret(hdr(RecordKind::MasterSecret), 0x0304, cipher, cr, 0x20);
        ev(&raw, |e| {
            let text = std::str::from_utf8(e.payload).unwrap();
            let labels: Vec<_> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
            assert_eq!(
                labels,
                [
                    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                    "CLIENT_TRAFFIC_SECRET_0",
                    "SERVER_TRAFFIC_SECRET_0",
                    "EXPORTER_SECRET"
                ]
            );
            for l in text.lines() {
                assert_eq!(l.split(' ').nth(2).unwrap().len(), 2 * len, "{l}");
            }
            assert!(text.contains(&format!(
                "CLIENT_TRAFFIC_SECRET_0 ab{}0c {}",
                "00".repeat(30),
                "23".repeat(len)
            )));
        });
    }
}

/// GnuTLS secrets: module gnutls, kind masterkey, uuid the client random in
/// upper-case hex, type the TLS version, payload the NSS key log lines.
#[test]
fn gnutls_secret_uuid_type_and_keylog_payload() {
    let mut cr = [0u8; 32];
    cr[0] = 0xfe;
    cr[31] = 0x01;
    let lower = format!("fe{}01", "00".repeat(30));
    let raw = synth::gnutls_secret(hdr(RecordKind::GnutlsSecret), 0x0303, 48, cr, 0x40, false);
    ev(&raw, |e| {
        assert_eq!(e.module, "gnutls");
        assert_eq!(e.uuid, format!("FE{}01", "00".repeat(30)));
        assert_eq!(e.r#type, 0x0303);
        assert_eq!(
            std::str::from_utf8(e.payload).unwrap(),
            format!("CLIENT_RANDOM {lower} {}\n", "40".repeat(48))
        );
        assert_eq!(
            (e.src_ip, e.src_port, e.dst_ip, e.dst_port),
            ("127.0.0.1", 0, "127.0.0.1", 0)
        );
    });
    for (hash_len, early) in [(32, false), (48, true)] {
        let raw = synth::gnutls_secret(
            hdr(RecordKind::GnutlsSecret),
            0x0304,
            hash_len,
            cr,
            0x40,
            early,
        );
        ev(&raw, |e| {
            assert_eq!(e.r#type, 0x0304);
            let text = std::str::from_utf8(e.payload).unwrap();
            let labels: Vec<_> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
            let mut want = vec![
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                "CLIENT_TRAFFIC_SECRET_0",
                "SERVER_TRAFFIC_SECRET_0",
                "EXPORTER_SECRET",
            ];
            if early {
                want.insert(0, "CLIENT_EARLY_TRAFFIC_SECRET");
            }
            assert_eq!(labels, want);
            let n = hash_len as usize;
            assert!(text.contains(&format!(
                "SERVER_TRAFFIC_SECRET_0 {lower} {}\n",
                "45".repeat(n)
            )));
            for l in text.lines() {
                assert_eq!(l.split(' ').nth(2).unwrap().len(), 2 * n, "{l}");
            }
        });
    }
}

#[test]
fn gotls_key_line() {
    let raw = synth::gotls_key(
        hdr(RecordKind::GotlsKey),
        "CLIENT_TRAFFIC_SECRET_0",
        [1; 32],
        &[2; 32],
    );
    ev(&raw, |e| {
        assert_eq!(e.module, "gotls");
        assert_eq!(e.uuid, "01".repeat(32));
        assert_eq!(
            std::str::from_utf8(e.payload).unwrap(),
            format!(
                "CLIENT_TRAFFIC_SECRET_0 {} {}\n",
                "01".repeat(32),
                "02".repeat(32)
            )
        );
    });
}

#[test]
fn comm_trimmed_at_first_nul_and_invalid_utf8_replaced() {
    let mut h = hdr(RecordKind::Bash);
    h.comm = *b"ba\0sh\0\0\0\0\0\0\0\0\0\0\0";
    assert_eq!(comm(&h), b"ba");
    let raw = synth::single(synth::bash(h, 0, 0), b"x");
    ev(&raw, |e| assert_eq!(e.pname, "ba"));
    h.comm = *b"\xffab\0\0\0\0\0\0\0\0\0\0\0\0\0";
    let raw = synth::single(synth::bash(h, 0, 0), b"x");
    ev(&raw, |e| assert_eq!(e.pname, "\u{fffd}ab"));
    h.comm = *b"0123456789abcdef";
    let raw = synth::single(synth::bash(h, 0, 0), b"x");
    ev(&raw, |e| assert_eq!(e.pname, "0123456789abcdef"));
}

#[test]
fn clock_converts_boot_time() {
    assert_eq!(Clock::from_offset(10).to_unix_ns(5), 15);
    let now = Clock::now().to_unix_ns(0);
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(
        now < real && now > 0,
        "boot instant {now} must precede now {real}"
    );
}

#[test]
fn tuple_text_and_parse_both_families() {
    let mut s = String::new();
    write_tuple(&v4(), &mut s).unwrap();
    assert_eq!(s, "127.0.0.1:52814-10.0.0.2:8443");
    let (a, b) = parse_tuple(&s).unwrap();
    assert_eq!(a.to_string(), "127.0.0.1:52814");
    assert_eq!(b.to_string(), "10.0.0.2:8443");
    let mut s = String::new();
    write_tuple(&v6(), &mut s).unwrap();
    assert_eq!(s, "[::1]:52814-[2001:db8::2]:443");
    let (a, b) = parse_tuple(&s).unwrap();
    assert_eq!((a.port, b.port), (52814, 443));
    assert_eq!(b.ip, "2001:db8::2".parse::<std::net::IpAddr>().unwrap());
    // Mixed families and the reverse direction parse too.
    let (a, b) = parse_tuple("[fe80::1]:1-1.2.3.4:2").unwrap();
    assert_eq!(
        (a.to_string(), b.to_string()),
        ("[fe80::1]:1".into(), "1.2.3.4:2".into())
    );
    let (x, y) = parse_tuple("10.0.0.2:8443-127.0.0.1:52814").unwrap();
    assert_eq!((x.port, y.port), (8443, 52814));
    let mut s = String::new();
    write_tuple(&Tuple::default(), &mut s).unwrap();
    assert_eq!(s, "0.0.0.0:0-0.0.0.0:0");
    assert_eq!(
        parse_tuple(&s).unwrap(),
        (Endpoint::UNSPECIFIED, Endpoint::UNSPECIFIED)
    );
}

#[test]
fn tuple_parse_errors() {
    assert!(matches!(
        parse_tuple("1.2.3.4:5"),
        Err(TupleError::NoSeparator(_))
    ));
    for bad in [
        "::1:80-1.2.3.4:5",
        "1.2.3.4-5.6.7.8:9",
        "[::1]-1.2.3.4:1",
        "1.2.3.4:99999-1.2.3.4:1",
        "a:1-b:2",
        "-",
    ] {
        assert!(
            matches!(parse_tuple(bad), Err(TupleError::BadEndpoint { .. })),
            "{bad}"
        );
    }
}

#[test]
fn module_and_kind_names_round_trip() {
    for m in Module::ALL {
        assert_eq!(Module::from_name(m.name()), Some(m));
    }
    let names: Vec<_> = Module::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(
        names,
        [
            "tls", "gnutls", "nss", "gotls", "bash", "mysqld", "postgres"
        ]
    );
    let kinds: Vec<_> = rcapture_core::event::EventKind::ALL
        .iter()
        .map(|k| k.name())
        .collect();
    assert_eq!(
        kinds,
        ["data", "masterkey", "conn", "packet", "bash", "query"]
    );
}
