//! `--pcap-filter`: a subset of pcap-filter(7) compiled into the test table
//! the tc programs evaluate (`struct rc_pkt_test` of `include/records.h`).
//!
//! Accepted: the primitives `tcp`, `udp`, `icmp`, `icmp6`, `ip`, `ip6`,
//! `[src|dst] port N` and `[src|dst] host ADDR` (an IPv4 or IPv6 address),
//! a protocol before a port or host (`tcp port 443`, `ip6 host ::1`),
//! `and`/`&&`, `or`/`||`, `not`/`!` and parentheses. As in pcap-filter, a
//! bare value repeats the qualifiers of the primitive before it
//! (`port 443 or 8443`, `host 10.0.0.1 or 10.0.0.2`). The expression is
//! brought to disjunctive normal form, which must fit in
//! [`PKT_TESTS_MAX`] tests.

use std::fmt;
use std::net::IpAddr;

use rcapture_core::records::{
    FAMILY_INET, FAMILY_INET6, PKT_TESTS_MAX, PT_DHOST, PT_DPORT, PT_FAMILY, PT_HOST, PT_PORT,
    PT_PROTO, PT_SHOST, PT_SPORT, PacketTest,
};

/// Why a filter expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("packet filter {expr:?}: {reason}")]
pub struct FilterError {
    /// The expression.
    pub expr: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A compiled packet filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketFilter {
    expr: String,
    tests: Vec<PacketTest>,
}

impl Default for PacketFilter {
    /// TCP only, the capture's default.
    fn default() -> Self {
        Self::parse("tcp").expect("a valid filter")
    }
}

impl fmt::Display for PacketFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl std::str::FromStr for PacketFilter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, FilterError> {
        Self::parse(s)
    }
}

impl PacketFilter {
    /// Compiles `expr`; an empty expression lets every packet pass.
    pub fn parse(expr: &str) -> Result<Self, FilterError> {
        let err = |reason: String| FilterError {
            expr: expr.to_owned(),
            reason,
        };
        let tokens = tokenize(expr);
        if tokens.is_empty() {
            return Ok(Self {
                expr: expr.to_owned(),
                tests: Vec::new(),
            });
        }
        let mut p = Parser {
            tokens,
            at: 0,
            last: None,
        };
        let node = p.or().map_err(err)?;
        if let Some(t) = p.tokens.get(p.at) {
            return Err(err(format!("unexpected {t:?}")));
        }
        let dnf = dnf(node, false);
        let n: usize = dnf.iter().map(Vec::len).sum();
        if n > PKT_TESTS_MAX {
            return Err(err(format!(
                "needs {n} tests in disjunctive normal form; the tc programs take at most {PKT_TESTS_MAX}"
            )));
        }
        let mut tests = Vec::with_capacity(n);
        for conj in dnf {
            let len = conj.len();
            for (i, (prim, negate)) in conj.into_iter().enumerate() {
                let mut t = prim.test();
                t.negate = u8::from(negate);
                t.last = u8::from(i + 1 == len);
                tests.push(t);
            }
        }
        Ok(Self {
            expr: expr.to_owned(),
            tests,
        })
    }

    /// The expression as given.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The tests, in disjunctive normal form.
    pub fn tests(&self) -> &[PacketTest] {
        &self.tests
    }

    /// The `pkt_tests` global: [`PKT_TESTS_MAX`] tests, unused ones zero.
    pub(crate) fn global_bytes(&self) -> Vec<u8> {
        let mut all = [PacketTest::default(); PKT_TESTS_MAX];
        all[..self.tests.len()].copy_from_slice(&self.tests);
        bytemuck::cast_slice(&all).to_vec()
    }
}

/// Source, destination, or either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Any,
    Src,
    Dst,
}

/// One test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prim {
    Proto(u8),
    Family(u16),
    Port(Dir, u16),
    Host(Dir, IpAddr),
}

impl Prim {
    fn test(self) -> PacketTest {
        let mut t = PacketTest::default();
        match self {
            Prim::Proto(p) => (t.op, t.value) = (PT_PROTO, u32::from(p)),
            Prim::Family(f) => (t.op, t.value) = (PT_FAMILY, u32::from(f)),
            Prim::Port(d, port) => {
                t.op = match d {
                    Dir::Any => PT_PORT,
                    Dir::Src => PT_SPORT,
                    Dir::Dst => PT_DPORT,
                };
                t.value = u32::from(port);
            }
            Prim::Host(d, ip) => {
                t.op = match d {
                    Dir::Any => PT_HOST,
                    Dir::Src => PT_SHOST,
                    Dir::Dst => PT_DHOST,
                };
                match ip {
                    IpAddr::V4(a) => {
                        t.value = u32::from(FAMILY_INET);
                        t.addr[..4].copy_from_slice(&a.octets());
                    }
                    IpAddr::V6(a) => {
                        t.value = u32::from(FAMILY_INET6);
                        t.addr = a.octets();
                    }
                }
            }
        }
        t
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Prim(Prim),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
}

fn tokenize(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let single = match c {
            '(' | ')' | '!' => Some(c.to_string()),
            '&' | '|' if chars.peek() == Some(&c) => {
                chars.next();
                Some(format!("{c}{c}"))
            }
            _ => None,
        };
        if c.is_whitespace() || single.is_some() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            out.extend(single);
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// What a bare value after a primitive repeats.
#[derive(Debug, Clone, Copy)]
enum Last {
    Port(Option<u8>, Dir),
    Host(Option<Prim>, Dir),
}

struct Parser {
    tokens: Vec<String>,
    at: usize,
    last: Option<Last>,
}

const PROTOS: [(&str, Prim); 6] = [
    ("tcp", Prim::Proto(6)),
    ("udp", Prim::Proto(17)),
    ("icmp", Prim::Proto(1)),
    ("icmp6", Prim::Proto(58)),
    ("ip", Prim::Family(FAMILY_INET)),
    ("ip6", Prim::Family(FAMILY_INET6)),
];

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn next(&mut self) -> Option<String> {
        let t = self.tokens.get(self.at).cloned();
        self.at += usize::from(t.is_some());
        t
    }

    fn or(&mut self) -> Result<Node, String> {
        let mut left = self.and()?;
        while matches!(self.peek(), Some("or" | "||")) {
            self.at += 1;
            left = Node::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, String> {
        let mut left = self.unary()?;
        while matches!(self.peek(), Some("and" | "&&")) {
            self.at += 1;
            left = Node::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, String> {
        match self.peek() {
            Some("not" | "!") => {
                self.at += 1;
                Ok(Node::Not(Box::new(self.unary()?)))
            }
            Some("(") => {
                self.at += 1;
                let inner = self.or()?;
                match self.next().as_deref() {
                    Some(")") => Ok(inner),
                    Some(t) => Err(format!("expected `)`, found {t:?}")),
                    None => Err("a `(` is not closed".into()),
                }
            }
            Some(_) => self.primitive(),
            None => Err("the expression ends where a primitive was expected".into()),
        }
    }

    fn primitive(&mut self) -> Result<Node, String> {
        let first = self.next().unwrap_or_default();
        let proto = PROTOS.iter().find(|(n, _)| *n == first).map(|(_, p)| *p);
        let mut word = match proto {
            Some(p) => match self.peek() {
                Some("src" | "dst" | "port" | "host") => self.next().unwrap_or_default(),
                _ => {
                    self.last = None;
                    return Ok(Node::Prim(p));
                }
            },
            None => first.clone(),
        };
        let dir = match word.as_str() {
            "src" => Dir::Src,
            "dst" => Dir::Dst,
            _ => Dir::Any,
        };
        if dir != Dir::Any {
            word = self
                .next()
                .ok_or_else(|| "`src`/`dst` must be followed by `port` or `host`".to_owned())?;
        }
        match word.as_str() {
            "port" => {
                let v = self.next().ok_or("`port` needs a number")?;
                let ip_proto = match proto {
                    Some(Prim::Proto(p @ (6 | 17))) => Some(p),
                    Some(Prim::Proto(_)) => return Err("only tcp and udp have ports".into()),
                    Some(_) | None => None,
                };
                self.last = Some(Last::Port(ip_proto, dir));
                port_node(&v, ip_proto, dir)
            }
            "host" => {
                let v = self.next().ok_or("`host` needs an address")?;
                if matches!(proto, Some(Prim::Proto(_))) {
                    return Err(format!(
                        "a protocol before `host` must be ip or ip6, not {first:?}"
                    ));
                }
                self.last = Some(Last::Host(proto, dir));
                host_node(&v, proto, dir)
            }
            other => match self.last {
                Some(Last::Port(p, d)) => port_node(other, p, d),
                Some(Last::Host(f, d)) => host_node(other, f, d),
                None => Err(format!(
                    "unknown primitive {other:?} (known: tcp, udp, icmp, icmp6, ip, ip6, [src|dst] port N, [src|dst] host ADDR)"
                )),
            },
        }
    }
}

fn port_node(v: &str, proto: Option<u8>, dir: Dir) -> Result<Node, String> {
    let port: u16 = v
        .parse()
        .map_err(|_| format!("port {v:?} is not a number from 0 to 65535"))?;
    let p = Node::Prim(Prim::Port(dir, port));
    Ok(match proto {
        Some(x) => Node::And(Box::new(Node::Prim(Prim::Proto(x))), Box::new(p)),
        None => p,
    })
}

fn host_node(v: &str, family: Option<Prim>, dir: Dir) -> Result<Node, String> {
    let ip: IpAddr = v.parse().map_err(|_| {
        format!("host {v:?} is not an IPv4 or IPv6 address (names are not resolved)")
    })?;
    let want = if ip.is_ipv4() {
        FAMILY_INET
    } else {
        FAMILY_INET6
    };
    if let Some(Prim::Family(f)) = family
        && f != want
    {
        return Err(format!("host {v} is not an address of that family"));
    }
    Ok(Node::Prim(Prim::Host(dir, ip)))
}

/// Disjunctive normal form: a list of conjunctions of (test, negated).
fn dnf(node: Node, negate: bool) -> Vec<Vec<(Prim, bool)>> {
    match (node, negate) {
        (Node::Prim(p), n) => vec![vec![(p, n)]],
        (Node::Not(inner), n) => dnf(*inner, !n),
        (Node::Or(a, b), false) | (Node::And(a, b), true) => {
            let mut v = dnf(*a, negate);
            v.extend(dnf(*b, negate));
            v
        }
        (Node::And(a, b), false) | (Node::Or(a, b), true) => {
            let (l, r) = (dnf(*a, negate), dnf(*b, negate));
            let mut v = Vec::with_capacity(l.len() * r.len());
            for x in &l {
                for y in &r {
                    v.push(x.iter().chain(y).copied().collect());
                }
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(op, negate, last, value)` of every test.
    fn ops(expr: &str) -> Vec<(u8, u8, u8, u32)> {
        PacketFilter::parse(expr)
            .unwrap_or_else(|e| panic!("{e}"))
            .tests()
            .iter()
            .map(|t| (t.op, t.negate, t.last, t.value))
            .collect()
    }

    fn refused(expr: &str) -> String {
        PacketFilter::parse(expr).expect_err(expr).reason
    }

    #[test]
    fn primitives() {
        assert_eq!(ops("tcp"), [(PT_PROTO, 0, 1, 6)]);
        assert_eq!(ops(""), []);
        assert_eq!(ops("ip6"), [(PT_FAMILY, 0, 1, 10)]);
        assert_eq!(ops("port 443"), [(PT_PORT, 0, 1, 443)]);
        assert_eq!(ops("dst port 53"), [(PT_DPORT, 0, 1, 53)]);
        assert_eq!(
            ops("tcp src port 22"),
            [(PT_PROTO, 0, 0, 6), (PT_SPORT, 0, 1, 22)]
        );
        let f = PacketFilter::parse("dst host 10.1.2.3").unwrap();
        assert_eq!((f.tests()[0].op, f.tests()[0].value), (PT_DHOST, 2));
        assert_eq!(&f.tests()[0].addr[..5], &[10, 1, 2, 3, 0]);
        let f = PacketFilter::parse("ip6 host ::1").unwrap();
        assert_eq!((f.tests()[0].op, f.tests()[0].addr[15]), (PT_HOST, 1));
    }

    #[test]
    fn boolean_structure_is_brought_to_dnf() {
        // a and (b or c) = (a and b) or (a and c)
        assert_eq!(
            ops("tcp and (port 80 or port 443)"),
            [
                (PT_PROTO, 0, 0, 6),
                (PT_PORT, 0, 1, 80),
                (PT_PROTO, 0, 0, 6),
                (PT_PORT, 0, 1, 443)
            ]
        );
        // not (a or b) = not a and not b; `!` and `&&` spellings
        assert_eq!(
            ops("!(port 22 || port 53) && udp"),
            [
                (PT_PORT, 1, 0, 22),
                (PT_PORT, 1, 0, 53),
                (PT_PROTO, 0, 1, 17)
            ]
        );
        // not (a and b) = not a or not b
        assert_eq!(
            ops("not (tcp and port 22)"),
            [(PT_PROTO, 1, 1, 6), (PT_PORT, 1, 1, 22)]
        );
        // a bare value repeats the qualifiers before it
        assert_eq!(
            ops("tcp port 80 or 443"),
            [
                (PT_PROTO, 0, 0, 6),
                (PT_PORT, 0, 1, 80),
                (PT_PROTO, 0, 0, 6),
                (PT_PORT, 0, 1, 443)
            ]
        );
        assert_eq!(
            ops("src host 10.0.0.1 or 10.0.0.2"),
            [(PT_SHOST, 0, 1, 2), (PT_SHOST, 0, 1, 2)]
        );
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        assert!(refused("port http").contains("not a number"));
        assert!(refused("host example.com").contains("names are not resolved"));
        assert!(refused("arp").contains("unknown primitive \"arp\""));
        assert!(refused("(tcp").contains("not closed"));
        assert!(refused("tcp and").contains("ends where a primitive"));
        assert!(refused("tcp udp").contains("unexpected \"udp\""));
        assert!(refused("icmp port 1").contains("only tcp and udp"));
        assert!(refused("ip host ::1").contains("not an address of that family"));
        assert!(refused("tcp host 1.2.3.4").contains("must be ip or ip6"));
        // (a or b) and (c or d) and ... grows as a product
        let big = (0..6)
            .map(|i| format!("(port {i} or port {})", i + 100))
            .collect::<Vec<_>>()
            .join(" and ");
        assert!(refused(&big).contains("at most 32"), "{}", refused(&big));
        let e = PacketFilter::parse("bogus").unwrap_err().to_string();
        assert!(
            e.starts_with("packet filter \"bogus\": unknown primitive"),
            "{e}"
        );
    }

    #[test]
    fn global_is_the_whole_array() {
        let b = PacketFilter::parse("tcp port 443").unwrap().global_bytes();
        assert_eq!(b.len(), PKT_TESTS_MAX * 24);
        assert_eq!(&b[..8], &[PT_PROTO, 0, 0, 0, 6, 0, 0, 0]);
        assert_eq!(&b[24..32], &[PT_PORT, 0, 1, 0, 0xbb, 1, 0, 0]);
        assert!(b[48..].iter().all(|&x| x == 0));
        assert_eq!(PacketFilter::default().expr(), "tcp");
    }
}
