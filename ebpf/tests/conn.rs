//! The conn module against real sockets of this process: connection events
//! with the right pid, fd and tuple, and packets on `lo` through tcx with
//! the process they belong to.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use rcapture_core::decode::{Record, decode};
use rcapture_core::records::{CONN_ACCEPT, CONN_CLOSE, CONN_CONNECT, DIR_SEND, RecordKind};
use rcapture_core::tuple::endpoints;
use rcapture_ebpf::module::{self, TargetRequest};
use rcapture_ebpf::pktfilter::PacketFilter;
use rcapture_ebpf::{
    Capture, CaptureOptions, CpuRing, Interface, MAX_SNAP_LEN, PacketCapture, packet_target,
};

use crate::testutil::{drain, require_bpf};

fn pid() -> u32 {
    std::process::id()
}

/// (event, pid, fd, local, remote) of every conn record of this process.
fn conns(records: &[(u32, Vec<u8>)]) -> Vec<(u8, u32, u32, String, String)> {
    records
        .iter()
        .filter_map(|(_, raw)| match decode(raw).expect("a valid record") {
            Record::Conn(c) if c.hdr.pid == pid() => {
                let (l, r) = endpoints(&c.tuple).expect("an inet tuple");
                Some((c.event, c.hdr.pid, c.fd, l.to_string(), r.to_string()))
            }
            _ => None,
        })
        .collect()
}

/// The conn module alone, loaded, with its rings.
fn load_conn() -> (Capture, Vec<CpuRing>) {
    let conn = module::module("conn").expect("the conn module");
    let target = (conn.resolve)(&TargetRequest::default()).expect("conn target");
    let mut probes = Capture::load(&[target], &CaptureOptions::default()).expect("load");
    let rings = probes.take_rings();
    (probes, rings)
}

#[test]
fn connect_accept_close_of_this_process() {
    let Some(_guard) = require_bpf() else { return };
    connect_accept_close_on("127.0.0.1:0");
}

/// The same over IPv6 loopback: the tuple is the IPv6 one
/// (`[::1]:PORT`), not a mapped or empty address.
#[test]
fn connect_accept_close_over_ipv6() {
    let Some(_guard) = require_bpf() else { return };
    if TcpListener::bind("[::1]:0").is_err() {
        panic!("no IPv6 loopback on this machine: ::1 cannot be bound");
    }
    connect_accept_close_on("[::1]:0");
}

/// Connect, accept, one write and both closes on `bind`'s address family:
/// each event with this process's pid, the right fd and the tuple.
fn connect_accept_close_on(bind: &str) {
    let (mut probes, mut rings) = load_conn();

    let listener = TcpListener::bind(bind).unwrap();
    let server = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(server).unwrap();
    let client_fd = client.as_raw_fd() as u32;
    let (mut accepted, peer) = listener.accept().unwrap();
    let accepted_fd = accepted.as_raw_fd() as u32;
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    accepted.read_exact(&mut buf).unwrap();
    drop(client);
    drop(accepted);
    std::thread::sleep(std::time::Duration::from_millis(50));
    probes.stop_capture().unwrap();
    let records = drain(&mut rings);
    let seen = conns(&records);
    eprintln!("{seen:#?}");
    let (s, c) = (server.to_string(), peer.to_string());
    assert!(
        seen.contains(&(CONN_CONNECT, pid(), client_fd, c.clone(), s.clone())),
        "connect of fd {client_fd} {c}->{s} in {seen:?}"
    );
    assert!(
        seen.contains(&(CONN_ACCEPT, pid(), accepted_fd, s.clone(), c.clone())),
        "accept of fd {accepted_fd} in {seen:?}"
    );
    assert!(seen.contains(&(CONN_CLOSE, pid(), client_fd, c.clone(), s.clone())));
    assert!(seen.contains(&(CONN_CLOSE, pid(), accepted_fd, s, c)));
    let counters = probes.counters().unwrap();
    assert!(counters.iter().all(|c| c.lost == 0), "{counters:?}");
}

/// A process that exits without closing its socket: the close comes from
/// the socket's destruction, with the pid seen at connect.
#[test]
fn close_of_a_process_that_exits_without_close() {
    let Some(_guard) = require_bpf() else { return };
    let (mut probes, mut rings) = load_conn();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let child = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import os, socket\ns = socket.create_connection(('127.0.0.1', {port}))\ns.sendall(b'x')\nos._exit(0)"
        ))
        .spawn()
        .expect("python3");
    let child_pid = child.id();
    let (mut accepted, _) = listener.accept().unwrap();
    let mut buf = [0u8; 1];
    accepted.read_exact(&mut buf).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    drop(accepted);
    std::thread::sleep(std::time::Duration::from_millis(100));
    probes.stop_capture().unwrap();
    let records = drain(&mut rings);
    // The rings are read one CPU after the other: order by kernel time
    // (the connect and the close may have run on different CPUs).
    let mut theirs: Vec<(u64, u8, u16)> = records
        .iter()
        .filter_map(|(_, raw)| match decode(raw).unwrap() {
            Record::Conn(c) if c.hdr.pid == child_pid => {
                Some((c.hdr.ts_ns, c.event, c.tuple.dport))
            }
            _ => None,
        })
        .collect();
    theirs.sort_unstable();
    let theirs: Vec<(u8, u16)> = theirs.into_iter().map(|(_, e, p)| (e, p)).collect();
    assert_eq!(
        theirs,
        [(CONN_CONNECT, port), (CONN_CLOSE, port)],
        "events of pid {child_pid}"
    );
}

#[test]
fn packets_on_lo_carry_their_process() {
    let Some(_guard) = require_bpf() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let lo = Interface::lookup("lo").expect("lo");
    let ifindex = lo.ifindex;
    let target = packet_target(&PacketCapture {
        interfaces: vec![lo],
        snap_len: 100,
        filter: PacketFilter::parse(&format!("tcp port {port}")).unwrap(),
    })
    .expect("packet target");
    // The largest snap length loads too (the verifier sees its value).
    let big = packet_target(&PacketCapture {
        interfaces: vec![Interface::lookup("lo").unwrap()],
        snap_len: MAX_SNAP_LEN,
        filter: PacketFilter::default(),
    })
    .expect("packet target");
    drop(Capture::load(&[big], &CaptureOptions::default()).expect("load, largest snap length"));
    let mut probes = Capture::load(&[target], &CaptureOptions::default()).expect("load");
    let mut rings = probes.take_rings();

    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    let big = vec![b'x'; 3000];
    client.write_all(&big).unwrap();
    let mut got = vec![0u8; big.len()];
    accepted.read_exact(&mut got).unwrap();
    // Unrelated traffic is filtered out in the kernel.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let _o = TcpStream::connect(other.local_addr().unwrap()).unwrap();
    drop(client);
    drop(accepted);
    std::thread::sleep(std::time::Duration::from_millis(50));
    probes.stop_capture().unwrap();
    let records = drain(&mut rings);

    let mut packets = 0;
    let mut attributed = 0;
    for (_, raw) in &records {
        let Record::Packet(p) = decode(raw).unwrap() else {
            continue;
        };
        packets += 1;
        assert_eq!(p.rec.hdr.kind, RecordKind::Packet as u16);
        assert_eq!((p.rec.ifindex, p.rec.direction), (ifindex, DIR_SEND));
        // Ethernet header with zero MACs, IPv4, then TCP to or from `port`.
        assert_eq!(
            &p.payload[..14],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0]
        );
        let sport = u16::from_be_bytes([p.payload[34], p.payload[35]]);
        let dport = u16::from_be_bytes([p.payload[36], p.payload[37]]);
        assert!(sport == port || dport == port, "{sport} -> {dport}");
        // At most snap_len bytes; total_len is the packet's length.
        assert!(p.payload.len() <= 100 && p.rec.chunk.total_len as usize >= p.payload.len());
        if p.rec.hdr.pid == pid() {
            attributed += 1;
        }
    }
    eprintln!("{packets} packets, {attributed} attributed to this process");
    // SYN, SYN-ACK, ACK, data, FINs and ACKs.
    assert!(packets >= 6, "{packets} packets");
    // Both ends are this process: every packet after connect() and
    // accept() returned finds its connection (the handshake's SYN,
    // SYN-ACK and ACK leave before).
    assert!(attributed >= packets - 3, "{attributed} of {packets}");
    let counters = probes.counters().unwrap();
    assert!(counters.iter().all(|c| c.lost == 0), "{counters:?}");
}
