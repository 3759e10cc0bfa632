//! Who is on the other end of a loopback TCP connection: the owner (uid) of
//! the client's socket, found with one `NETLINK_SOCK_DIAG` `inet_diag`
//! lookup (the socket whose local address is the peer's and whose remote
//! address is ours), and the groups of a uid from the user database.
//!
//! This is the OS seam of the server's access check (see [`crate::access`]):
//! every `unsafe` of it is here.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `INET_DIAG_NOCOOKIE`: no socket cookie to match.
const NO_COOKIE: u32 = !0;
/// `struct nlmsghdr`.
const NLMSG_HDR: usize = 16;
/// `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// Offsets in `struct inet_diag_msg`: `idiag_state`, `idiag_uid`, `idiag_inode`.
const MSG_STATE: usize = 1;
const MSG_UID: usize = 64;
const MSG_INODE: usize = 68;
const MSG_LEN: usize = 72;

/// TCP states of a full socket (include/net/tcp_states.h) — the ones whose
/// `idiag_uid` is the owner's. A time-wait or request socket reports uid 0
/// whoever made it, so it proves nothing; nor does a socket its owner has
/// closed: a client that sends a request and closes at once becomes a
/// time-wait socket in state FIN_WAIT2 (uid 0, inode 0) — so an owner
/// must still hold the socket (inode not 0).
const OWNED_STATES: [u8; 7] = [
    1,  // ESTABLISHED
    2,  // SYN_SENT
    4,  // FIN_WAIT1
    5,  // FIN_WAIT2
    8,  // CLOSE_WAIT
    9,  // LAST_ACK
    11, // CLOSING
];

/// Why the owner of a connection is not known.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("sock_diag: {0}")]
    Io(#[from] io::Error),
    #[error("the client's socket is gone (sock_diag: {0})")]
    NotFound(io::Error),
    #[error("the client's socket is in TCP state {0}, which has no owner")]
    NoOwner(u8),
    #[error("the client closed its socket, so its owner is not known")]
    Closed,
    #[error("sock_diag answered with a short or unexpected message")]
    Malformed,
    #[error("{peer} and {local} are not the same address family")]
    Family { peer: SocketAddr, local: SocketAddr },
}

/// An IPv4-mapped IPv6 address as IPv4 (a dual-stack listener's peers).
pub fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// Whether `ip` is a loopback address (IPv4-mapped too).
pub fn is_loopback(ip: IpAddr) -> bool {
    canonical(SocketAddr::new(ip, 0)).ip().is_loopback()
}

/// The address a client is rate-limited as: every loopback address is one
/// client (127.0.0.2, .3... share a bucket), others their own.
pub fn rate_class(ip: IpAddr) -> IpAddr {
    if is_loopback(ip) {
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        ip
    }
}

/// The uid owning the client socket of the connection `peer` → `local`
/// (as the server's accepted socket sees it: `peer` is the client).
pub fn peer_uid(peer: SocketAddr, local: SocketAddr) -> Result<u32, PeerError> {
    let (peer, local) = (canonical(peer), canonical(local));
    let family = match (peer.ip(), local.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => libc::AF_INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => libc::AF_INET6,
        _ => return Err(PeerError::Family { peer, local }),
    };
    let req = request(family as u8, peer, local);
    let fd = netlink_socket()?;
    send(&fd, &req)?;
    let mut buf = [0u8; 1024];
    let n = recv(&fd, &mut buf)?;
    parse_reply(&buf[..n])
}

/// The `nlmsghdr` + `inet_diag_req_v2` of an exact lookup: the socket
/// whose own (source) address is `peer` and whose remote is `local`.
fn request(family: u8, peer: SocketAddr, local: SocketAddr) -> [u8; NLMSG_HDR + REQ_LEN] {
    let mut m = [0u8; NLMSG_HDR + REQ_LEN];
    m[0..4].copy_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m[8..12].copy_from_slice(&1u32.to_ne_bytes());
    let r = &mut m[NLMSG_HDR..];
    r[0] = family;
    r[1] = libc::IPPROTO_TCP as u8;
    r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
    // inet_diag_sockid: sport, dport (big-endian), src[4], dst[4], if, cookie[2].
    let id = &mut r[8..];
    id[0..2].copy_from_slice(&peer.port().to_be_bytes());
    id[2..4].copy_from_slice(&local.port().to_be_bytes());
    put_ip(&mut id[4..20], peer.ip());
    put_ip(&mut id[20..36], local.ip());
    id[40..44].copy_from_slice(&NO_COOKIE.to_ne_bytes());
    id[44..48].copy_from_slice(&NO_COOKIE.to_ne_bytes());
    m
}

fn put_ip(out: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.copy_from_slice(&v6.octets()),
    }
}

fn parse_reply(b: &[u8]) -> Result<u32, PeerError> {
    let word = |at: usize| -> Result<u32, PeerError> {
        b.get(at..at + 4)
            .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
            .ok_or(PeerError::Malformed)
    };
    let len = word(0)? as usize;
    let kind = b
        .get(4..6)
        .map(|s| u16::from_ne_bytes([s[0], s[1]]))
        .ok_or(PeerError::Malformed)?;
    if len > b.len() {
        return Err(PeerError::Malformed);
    }
    if kind == libc::NLMSG_ERROR as u16 {
        let errno = word(NLMSG_HDR)? as i32;
        return Err(PeerError::NotFound(io::Error::from_raw_os_error(-errno)));
    }
    if kind != SOCK_DIAG_BY_FAMILY || len < NLMSG_HDR + MSG_LEN {
        return Err(PeerError::Malformed);
    }
    let msg = &b[NLMSG_HDR..];
    let state = msg[MSG_STATE];
    if !OWNED_STATES.contains(&state) {
        return Err(PeerError::NoOwner(state));
    }
    if word(NLMSG_HDR + MSG_INODE)? == 0 {
        return Err(PeerError::Closed);
    }
    word(NLMSG_HDR + MSG_UID)
}

fn netlink_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket just opened here and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: sockaddr_nl is plain data; all zeroes is the kernel's address.
    let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `msg` and `to` are valid for the lengths given for the whole call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&raw const to).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel answers within `sendto`, so the reply is there: never wait.
fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length for the whole call.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The primary and supplementary groups of `uid` in the user database
/// (`getpwuid_r` + `getgrouplist`); empty if the uid has no entry.
pub fn groups_of(uid: u32) -> Vec<u32> {
    // SAFETY: passwd is plain data (pointers null until getpwuid_r fills them).
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut strings = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `strings` outlives the use
    // of the name it holds (below).
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pw,
            strings.as_mut_ptr(),
            strings.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return Vec::new();
    }
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: pw_name points into `strings` (NUL-terminated by
        // getpwuid_r); `groups` has room for `n` entries.
        let rc = unsafe { libc::getgrouplist(pw.pw_name, pw.pw_gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return groups;
        }
        // Too small: `n` says how many there are.
        if n as usize <= groups.len() || groups.len() >= 1 << 16 {
            return vec![pw.pw_gid];
        }
        groups.resize(n as usize, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// The lookup finds this process's own client socket, over IPv4 and
    /// IPv6, whichever side asks.
    #[test]
    fn finds_the_owner_of_a_loopback_client() {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(l) = TcpListener::bind(addr) else {
                eprintln!("skipping {addr}: cannot bind");
                continue;
            };
            let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (_s, peer) = l.accept().unwrap();
            assert_eq!(peer, c.local_addr().unwrap());
            let uid = peer_uid(peer, l.local_addr().unwrap()).expect("found");
            assert_eq!(uid, me, "{addr}");
            // A port no client holds: not found, not uid 0.
            let mut gone = peer;
            gone.set_port(1);
            assert!(matches!(
                peer_uid(gone, l.local_addr().unwrap()),
                Err(PeerError::NotFound(_))
            ));
            // The client closed (FIN_WAIT2, a time-wait socket of uid 0
            // whoever made it): no owner, not root.
            drop(c);
            std::thread::sleep(std::time::Duration::from_millis(50));
            let e = peer_uid(peer, l.local_addr().unwrap()).unwrap_err();
            assert!(
                matches!(e, PeerError::Closed | PeerError::NoOwner(_)),
                "{addr}: {e}"
            );
        }
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let a: SocketAddr = "[::ffff:127.0.0.2]:80".parse().unwrap();
        assert_eq!(canonical(a), "127.0.0.2:80".parse().unwrap());
        assert!(is_loopback(a.ip()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn groups_of_root_include_gid_0() {
        assert!(groups_of(0).contains(&0));
        assert!(groups_of(4_000_000_000).is_empty());
    }
}
