//! The `conn` module: TCP connection events from syscall and socket
//! tracepoints (tp_btf), and for `-m pcap` packets through tcx
//! (`src/conn.bpf.c`). It probes the kernel, not a file.

use std::path::{Path, PathBuf};

use rcapture_core::records::{CHUNK_MAX, RecordKind};

use crate::Error;
use crate::module::{Attach, AttachPoint, Global, ModuleDesc, Target, TargetRequest};
use crate::pktfilter::PacketFilter;

/// The connections (and packets) module.
pub static MODULE: ModuleDesc = ModuleDesc {
    name: "conn",
    about: "TCP connections (connect, accept, close) from tracepoints; packets through tcx for -m pcap",
    object: include_bytes!("../../obj/conn.bpf.o"),
    kinds: &[RecordKind::Conn, RecordKind::Packet],
    routes: &[],
    path_flag: "--modules",
    skipped: &[],
    resolve,
};

/// The kernel's BTF, which the tp_btf programs are loaded against.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Largest snap length: the tc programs send a packet in at most 16 chunks.
pub const MAX_SNAP_LEN: u32 = 16 * CHUNK_MAX as u32;

/// `/sys/class/net/IF/type` of the devices captured (ARPHRD_*).
const ARPHRD_ETHER: u32 = 1;
const ARPHRD_LOOPBACK: u32 = 772;

/// (program, tracepoint) of the connection events.
const CONN_PROBES: [(&str, &str); 3] = [
    ("rc_conn_sys_exit", "sys_exit"),
    ("rc_conn_sys_enter", "sys_enter"),
    ("rc_conn_destroy", "tcp_destroy_sock"),
];

fn resolve(req: &TargetRequest) -> Result<Target, Error> {
    if let Some(path) = &req.path {
        return Err(Error::Unsupported {
            module: MODULE.name,
            path: path.clone(),
            reason: "the conn module probes the kernel's tracepoints and takes no file".into(),
        });
    }
    conn_target()
}

/// The connection events alone.
fn conn_target() -> Result<Target, Error> {
    let btf = Path::new(VMLINUX_BTF);
    if !btf.exists() {
        return Err(Error::Unsupported {
            module: MODULE.name,
            path: btf.into(),
            reason: "the kernel has no BTF (CONFIG_DEBUG_INFO_BTF), which tp_btf programs need"
                .into(),
        });
    }
    let osrelease = Path::new("/proc/sys/kernel/osrelease");
    let version = std::fs::read_to_string(osrelease)
        .map_err(|source| Error::Read {
            path: osrelease.into(),
            source,
        })?
        .trim()
        .to_owned();
    Ok(Target {
        module: &MODULE,
        path: btf.into(),
        version,
        attach: CONN_PROBES
            .iter()
            .map(|&(program, tp)| Attach {
                program,
                point: AttachPoint::TpBtf(tp),
                required: true,
            })
            .collect(),
        globals: Vec::new(),
        notes: Vec::new(),
    })
}

/// A network interface packets are captured on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name (`lo`, `eth0`).
    pub name: String,
    /// Its index (`rc_packet.ifindex`).
    pub ifindex: u32,
    /// A loopback device: what leaves it arrives on it again.
    pub loopback: bool,
}

impl Interface {
    /// Looks the interface up in `/sys/class/net`; only Ethernet and
    /// loopback devices (a 14-byte Ethernet header before the IP header,
    /// pcapng link type 1) are accepted.
    pub fn lookup(name: &str) -> Result<Self, Error> {
        let dir = PathBuf::from("/sys/class/net").join(name);
        let unsupported = |reason: String| Error::Unsupported {
            module: MODULE.name,
            path: dir.clone(),
            reason,
        };
        if name.is_empty() || name.contains('/') || !dir.exists() {
            return Err(unsupported(format!("no network interface {name:?}")));
        }
        let read = |file: &str| -> Result<u32, Error> {
            let p = dir.join(file);
            let s = std::fs::read_to_string(&p).map_err(|source| Error::Read {
                path: p.clone(),
                source,
            })?;
            s.trim()
                .parse()
                .map_err(|_| unsupported(format!("{file} is {:?}, not a number", s.trim())))
        };
        let ifindex = read("ifindex")?;
        let link = read("type")?;
        if link != ARPHRD_ETHER && link != ARPHRD_LOOPBACK {
            return Err(unsupported(format!(
                "link type {link} (see /usr/include/linux/if_arp.h): only Ethernet (1) and loopback (772) interfaces are captured"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            ifindex,
            loopback: link == ARPHRD_LOOPBACK,
        })
    }
}

/// What `-m pcap` captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketCapture {
    /// The interfaces (at least one).
    pub interfaces: Vec<Interface>,
    /// Bytes of a packet kept at most (1 to [`MAX_SNAP_LEN`]).
    pub snap_len: u32,
    /// Which packets.
    pub filter: PacketFilter,
}

/// The connection events plus packet capture: tcx programs on ingress and
/// egress of every interface (egress only on a loopback device, whose
/// ingress sees the same packets again), and the send/receive tracepoints
/// that tell the packets of connections opened before the start their
/// process.
pub fn packet_target(p: &PacketCapture) -> Result<Target, Error> {
    let mut t = conn_target()?;
    if p.interfaces.is_empty() || p.snap_len == 0 || p.snap_len > MAX_SNAP_LEN {
        return Err(Error::Unsupported {
            module: MODULE.name,
            path: "/sys/class/net".into(),
            reason: format!(
                "packet capture needs an interface and a snap length from 1 to {MAX_SNAP_LEN}"
            ),
        });
    }
    for (program, tp) in [
        ("rc_conn_send", "sock_send_length"),
        ("rc_conn_recv", "sock_recv_length"),
    ] {
        t.attach.push(Attach {
            program,
            point: AttachPoint::TpBtf(tp),
            required: true,
        });
    }
    for i in &p.interfaces {
        let hooks: &[bool] = if i.loopback {
            t.notes.push(format!(
                "{} is a loopback device: each packet is captured once, at egress (its ingress sees the same packet again)",
                i.name
            ));
            &[false]
        } else {
            &[true, false]
        };
        for &ingress in hooks {
            t.attach.push(Attach {
                program: if ingress {
                    "rc_tc_ingress"
                } else {
                    "rc_tc_egress"
                },
                point: AttachPoint::Tcx {
                    interface: i.name.clone(),
                    ingress,
                },
                required: true,
            });
        }
    }
    t.globals = vec![
        ("track_flows", Global::U32(1)),
        ("snap_len", Global::U32(p.snap_len)),
        ("pkt_ntests", Global::U32(p.filter.tests().len() as u32)),
        ("pkt_tests", Global::Bytes(p.filter.global_bytes())),
    ];
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_captured_at_egress_only() {
        let lo = Interface::lookup("lo").expect("lo exists");
        assert!(lo.loopback && lo.ifindex > 0, "{lo:?}");
        let e = Interface::lookup("no-such-if0").unwrap_err().to_string();
        assert!(e.contains("no network interface \"no-such-if0\""), "{e}");
        let t = packet_target(&PacketCapture {
            interfaces: vec![lo],
            snap_len: 1500,
            filter: PacketFilter::default(),
        })
        .expect("target");
        let tcx: Vec<String> = t
            .attach
            .iter()
            .filter(|a| matches!(a.point, AttachPoint::Tcx { .. }))
            .map(|a| format!("{} {}", a.program, a.point))
            .collect();
        assert_eq!(tcx, ["rc_tc_egress tcx egress lo"]);
        assert!(t.notes[0].contains("once, at egress"), "{:?}", t.notes);
        assert!(t.globals.contains(&("snap_len", Global::U32(1500))));
    }

    #[test]
    fn a_path_is_refused() {
        let req = TargetRequest {
            path: Some("/x".into()),
            pid: None,
            symbols: Vec::new(),
        };
        let e = resolve(&req).unwrap_err().to_string();
        assert!(e.contains("takes no file"), "{e}");
        let t = resolve(&TargetRequest::default()).expect("conn target");
        assert_eq!(t.attach.len(), 3);
        assert!(!t.version.is_empty());
    }
}
