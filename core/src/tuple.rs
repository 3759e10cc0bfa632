//! Connection tuples: binary `rc_tuple` → text and text → addresses.
//!
//! Text form (WIRE.md §2): `SRC_IP:PORT-DST_IP:PORT`, IPv6 as
//! `[ADDR]:PORT-[ADDR]:PORT`; an unknown tuple is `0.0.0.0:0-0.0.0.0:0`.

use crate::records::{FAMILY_INET, FAMILY_INET6, Tuple};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One side of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl Endpoint {
    /// `0.0.0.0:0`, the unknown endpoint.
    pub const UNSPECIFIED: Endpoint = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
    };
    /// `127.0.0.1:0`, used by kinds without addresses (WIRE.md §2).
    pub const LOCAL_ZERO: Endpoint = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
    };
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// Local (src) and remote (dst) endpoints of a binary tuple; `None` if unknown.
pub fn endpoints(t: &Tuple) -> Option<(Endpoint, Endpoint)> {
    let ip = |a: &[u8; 16]| -> Option<IpAddr> {
        match t.family {
            FAMILY_INET => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            FAMILY_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*a))),
            _ => None,
        }
    };
    Some((
        Endpoint {
            ip: ip(&t.saddr)?,
            port: t.sport,
        },
        Endpoint {
            ip: ip(&t.daddr)?,
            port: t.dport,
        },
    ))
}

/// Writes the tuple text (`0.0.0.0:0-0.0.0.0:0` when unknown).
pub fn write_tuple(t: &Tuple, out: &mut impl fmt::Write) -> fmt::Result {
    let (s, d) = endpoints(t).unwrap_or((Endpoint::UNSPECIFIED, Endpoint::UNSPECIFIED));
    write!(out, "{s}-{d}")
}

/// Why a tuple text did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TupleError {
    /// No `-` between the two endpoints.
    #[error("tuple {0:?} has no '-' between its two endpoints")]
    NoSeparator(String),
    /// One side is not `IP:PORT` or `[IPV6]:PORT`.
    #[error("tuple side {side:?} is not IP:PORT or [IPV6]:PORT")]
    BadEndpoint { side: String },
}

/// Parses `SRC-DST` where each side is `IPv4:PORT` or `[IPv6]:PORT`.
pub fn parse_tuple(text: &str) -> Result<(Endpoint, Endpoint), TupleError> {
    // Neither an IPv4 address, a bracketed IPv6 address nor a port contains '-'.
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| TupleError::NoSeparator(text.to_owned()))?;
    Ok((parse_endpoint(a)?, parse_endpoint(b)?))
}

fn parse_endpoint(side: &str) -> Result<Endpoint, TupleError> {
    let err = || TupleError::BadEndpoint {
        side: side.to_owned(),
    };
    // Require brackets for IPv6 so `::1:80` is rejected, not misread.
    if !side.starts_with('[') && side.matches(':').count() != 1 {
        return Err(err());
    }
    let sa: SocketAddr = side.parse().map_err(|_| err())?;
    Ok(Endpoint {
        ip: sa.ip(),
        port: sa.port(),
    })
}
