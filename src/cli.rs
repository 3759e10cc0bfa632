//! Command-line arguments (clap): raw flags, validated in each command.

use clap::{Args, Parser, Subcommand, ValueEnum};
use rcapture_ebpf::module::TargetRequest;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Capture what processes say inside TLS, with eBPF.
#[derive(Debug, Parser)]
#[command(name = "rcapture", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// One subcommand per capture module; each adds its module's flags to the
/// common [`CaptureArgs`] and runs the one pipeline (`capture::run`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture OpenSSL (libssl.so.3) plaintext and secrets.
    Tls(TlsArgs),
    /// Capture GnuTLS (libgnutls.so.30) plaintext and secrets.
    Gnutls(GnutlsArgs),
    /// Capture Go crypto/tls plaintext and key logs from a Go program.
    Gotls(GotlsArgs),
    /// Capture NSS/NSPR (libnspr4.so) TLS plaintext (no key log: NSS gives no secrets).
    Nss(NssArgs),
    /// Capture the queries a MariaDB server (mariadbd) runs: the SQL, the
    /// dispatch_command return value and the SQL error number.
    Mysqld(MysqldArgs),
    /// Capture the queries PostgreSQL backends parse (simple queries and
    /// extended-protocol Parse messages).
    Postgres(PostgresArgs),
    /// Capture the command lines typed into interactive bash shells, with
    /// their exit status.
    Bash(BashArgs),
}

impl Command {
    /// The module the subcommand names, what the command line says of its
    /// target, and the common flags.
    pub fn into_parts(self) -> (&'static str, TargetRequest, CaptureArgs) {
        match self {
            Command::Tls(a) => {
                let mut req = a.capture.request(a.libssl);
                req.symbols = a.ssl_offsets;
                ("tls", req, a.capture)
            }
            Command::Gnutls(a) => ("gnutls", a.capture.request(a.gnutls), a.capture),
            Command::Gotls(a) => ("gotls", a.capture.request(a.elfpath), a.capture),
            Command::Nss(a) => ("nss", a.capture.request(a.nspr), a.capture),
            Command::Mysqld(a) => ("mysqld", a.capture.request(a.mysqld), a.capture),
            Command::Postgres(a) => ("postgres", a.capture.request(a.postgres), a.capture),
            Command::Bash(a) => ("bash", a.capture.request(a.bashpath), a.capture),
        }
    }
}

/// An octal file mode: `600`, `0600` or `0o600`, at most `0777`.
fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 && !digits.is_empty() => Ok(m),
        _ => Err(format!(
            "{s:?} is not an octal file mode from 0000 to 0777 (e.g. 0600)"
        )),
    }
}

/// What a capture writes on stdout (or to the key log file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputMode {
    /// Every event as text on stdout.
    Text,
    /// Only the secrets, as an NSS key log file (--keylogfile).
    Keylog,
    /// Nothing on stdout: only the server, the forwarder and the event file.
    None,
    /// Packets of the -i interfaces as pcapng (--pcapfile), with the TLS
    /// secrets in Decryption Secrets Blocks (Wireshark decrypts with no key
    /// file), and connection events.
    #[value(alias = "pcapng")]
    Pcap,
}

/// `rcapture tls`: OpenSSL.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// libssl (.so.1.1, .so.3, .so.4) or an executable with OpenSSL linked
    /// in, to probe (default: the one of --pid, else the system's libssl.so.3).
    #[arg(long, value_name = "PATH")]
    pub libssl: Option<PathBuf>,
    /// Addresses of OpenSSL functions in a stripped --libssl (as `nm` lists
    /// them in an unstripped build): SSL_write, SSL_write_ex, SSL_read,
    /// SSL_read_ex, SSL_set_fd, SSL_set_rfd, SSL_set_wfd; comma-separated.
    #[arg(long = "ssl-offsets", value_name = "SYMBOL=ADDR", value_delimiter = ',', value_parser = parse_symbol_addr)]
    pub ssl_offsets: Vec<(String, u64)>,
    #[command(flatten)]
    pub capture: CaptureArgs,
}

/// `SYMBOL=ADDR`, ADDR in hex (`0x7c330` or `7c330`).
fn parse_symbol_addr(s: &str) -> Result<(String, u64), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected SYMBOL=ADDR"))?;
    let hex = addr.strip_prefix("0x").unwrap_or(addr);
    let addr =
        u64::from_str_radix(hex, 16).map_err(|_| format!("`{s}`: {addr} is not a hex address"))?;
    if name.is_empty() {
        return Err(format!("`{s}`: no symbol name"));
    }
    Ok((name.to_owned(), addr))
}

/// `rcapture gnutls`: GnuTLS.
#[derive(Debug, Args)]
pub struct GnutlsArgs {
    /// libgnutls.so.30 to probe (default: the one of --pid, else the system's).
    #[arg(long, value_name = "PATH")]
    pub gnutls: Option<PathBuf>,
    #[command(flatten)]
    pub capture: CaptureArgs,
}

/// `rcapture gotls`: Go crypto/tls.
#[derive(Debug, Args)]
pub struct GotlsArgs {
    /// The Go executable to probe (default: the one of --pid, /proc/PID/exe).
    #[arg(long, value_name = "PATH")]
    pub elfpath: Option<PathBuf>,
    #[command(flatten)]
    pub capture: CaptureArgs,
}

/// `rcapture nss`: NSS/NSPR.
#[derive(Debug, Args)]
pub struct NssArgs {
    /// libnspr4.so to probe (default: the one of --pid, else the system's).
    #[arg(long, value_name = "PATH")]
    pub nspr: Option<PathBuf>,
    #[command(flatten)]
    pub capture: CaptureArgs,
}

/// `rcapture mysqld`: MariaDB's server.
#[derive(Debug, Args)]
pub struct MysqldArgs {
    /// The server binary to probe (default: the executable of --pid, else
    /// /usr/sbin/mariadbd, else /usr/sbin/mysqld).
    #[arg(long, value_name = "PATH")]
    pub mysqld: Option<PathBuf>,
    #[command(flatten)]
    pub capture: CaptureArgs,
}

/// `rcapture postgres`: PostgreSQL's server. Each connection is a backend
/// process of its own: --pid selects one backend; --uid (the server's
/// user) selects them all.
#[derive(Debug, Args)]
pub struct PostgresArgs {
    /// The server binary to probe (default: the executable of --pid, else
    /// the newest /usr/lib/postgresql/N/bin/postgres).
    #[arg(long, value_name = "PATH")]
    pub postgres: Option<PathBuf>,
    #[command(flatten)]
    pub capture: CaptureArgs,
}

/// `rcapture bash`: interactive bash.
#[derive(Debug, Args)]
pub struct BashArgs {
    /// bash executable to probe (default: the one of --pid, else /usr/bin/bash).
    #[arg(long, value_name = "PATH")]
    pub bashpath: Option<PathBuf>,
    #[command(flatten)]
    pub capture: CaptureArgs,
}

/// `--modules NAME[=PATH]`: one more module in the same capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraModule {
    pub name: String,
    pub path: Option<PathBuf>,
}

fn extra_module(s: &str) -> Result<ExtraModule, String> {
    let (name, path) = match s.split_once('=') {
        Some((n, p)) if !p.is_empty() => (n, Some(PathBuf::from(p))),
        Some(_) => return Err(format!("{s:?}: a path is needed after `=`")),
        None => (s, None),
    };
    if rcapture_ebpf::module::module(name).is_none() {
        return Err(format!(
            "unknown module {name:?} (available: {})",
            rcapture_ebpf::module::module_names()
        ));
    }
    Ok(ExtraModule {
        name: name.to_owned(),
        path,
    })
}

/// The flags every capture module shares.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Also capture these modules in the same process, on the same rings,
    /// workers and outputs (comma-separated; `NAME=PATH` gives a module its
    /// target file, as its own subcommand's path flag would).
    #[arg(long, value_name = "NAME[=PATH],...", value_delimiter = ',', value_parser = extra_module)]
    pub modules: Vec<ExtraModule>,
    /// Only this process.
    #[arg(long, value_name = "N")]
    pub pid: Option<u32>,
    /// Only processes of this user id.
    #[arg(long, value_name = "N")]
    pub uid: Option<u32>,
    /// Output mode.
    #[arg(short = 'm', long = "mode", value_enum, default_value = "text")]
    pub mode: OutputMode,
    /// Key log file (NSS format) for -m keylog.
    #[arg(long, value_name = "FILE")]
    pub keylogfile: Option<PathBuf>,
    #[command(flatten)]
    pub pcap: PcapArgs,
    /// Permissions (octal) of the files rcapture writes: the key log, the
    /// event file and its rotations. The default 0600 lets only their owner
    /// (root) read the captured secrets and plaintext; an existing file is
    /// set to this mode too.
    #[arg(long, value_name = "OCTAL", default_value = "0600", value_parser = parse_mode)]
    pub file_mode: u32,
    /// Show payloads as a hex dump.
    #[arg(long)]
    pub hex: bool,
    /// Bytes captured per call at most; the rest is reported as truncated.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_payload: u32,
    /// Ring buffer size per CPU, in KiB.
    #[arg(long, value_name = "KIB", default_value_t = 8192)]
    pub per_cpu_map_size: usize,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub forward: ForwardArgs,
}

impl CaptureArgs {
    /// The target request of the subcommand's module: its path flag, and --pid.
    pub fn request(&self, path: Option<PathBuf>) -> TargetRequest {
        TargetRequest {
            path,
            pid: self.pid,
            symbols: Vec::new(),
        }
    }
}

/// `-m pcap`: packets through tc (tcx) written as pcapng.
#[derive(Debug, Args)]
pub struct PcapArgs {
    /// pcapng file for -m pcap (replaced if it exists).
    #[arg(long, value_name = "FILE")]
    pub pcapfile: Option<PathBuf>,
    /// Network interface whose packets -m pcap captures, on ingress and
    /// egress (repeatable, or a comma list); Ethernet and loopback devices.
    #[arg(
        short = 'i',
        long = "ifname",
        value_name = "IFACE",
        value_delimiter = ','
    )]
    pub ifname: Vec<String>,
    /// Bytes of each packet kept (-m pcap); the original length is recorded too.
    #[arg(long, value_name = "BYTES", default_value_t = rcapture_ebpf::MAX_SNAP_LEN,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(rcapture_ebpf::MAX_SNAP_LEN)))]
    pub snaplen: u32,
    /// Which packets -m pcap captures, filtered in the kernel: pcap-filter
    /// syntax with tcp, udp, icmp, icmp6, ip, ip6, [src|dst] port N,
    /// [src|dst] host ADDR, and/or/not and parentheses (default: tcp).
    #[arg(long, value_name = "EXPR")]
    pub pcap_filter: Option<rcapture_ebpf::pktfilter::PacketFilter>,
    /// Rotate the pcapng file when it would grow past this many bytes
    /// (FILE.1, FILE.2, …, 10 kept); 0: never.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub pcap_max_bytes: u64,
    /// Milliseconds a packet waits for its TLS session's secrets before it
    /// is written (secrets are known only once the handshake is done, and
    /// Wireshark needs them before the handshake's packets).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub pcap_hold_ms: u64,
}

/// Body format of forwarded batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ForwardFormatArg {
    /// One `LogBatch` per request (application/x-protobuf).
    Protobuf,
    /// NDJSON, one event per line (application/x-ndjson).
    Json,
    /// Each captured HTTP/1.x request re-sent through the proxy at the URL
    /// (mitmproxy, Burp); `http-proxy` is accepted too.
    #[value(name = "http_proxy", alias = "http-proxy")]
    HttpProxy,
}

/// Format of the event file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventFileFormatArg {
    Protobuf,
    Json,
}

/// Forwarding to collectors and the event file (WIRE.md §5).
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// POST batches of events to this collector URL (http:// or https://; the query string is kept).
    #[arg(long, value_name = "URL")]
    pub forward: Option<String>,
    /// Body format of the batches.
    #[arg(long, value_enum, default_value = "protobuf", requires = "forward")]
    pub forward_format: ForwardFormatArg,
    /// Events per batch.
    #[arg(long, value_name = "N", default_value_t = 100, requires = "forward")]
    pub batch_size: usize,
    /// A batch is sent this long after its first event at the latest.
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "forward")]
    pub batch_timeout_ms: u64,
    /// gzip the batch bodies (Content-Encoding: gzip).
    #[arg(long, requires = "forward")]
    pub gzip: bool,
    /// An extra request header `K: V` (repeatable). Visible to every user
    /// in `ps`: put credentials in --forward-header-file or the
    /// RCAPTURE_FORWARD_HEADERS environment variable (one `K: V` a line).
    #[arg(long = "forward-header", value_name = "K: V", requires = "forward")]
    pub forward_headers: Vec<String>,
    /// Extra request headers from this file, one `K: V` a line (blank lines
    /// and lines starting with # skipped); the file must not be readable by
    /// group or others (chmod 600).
    #[arg(long, value_name = "PATH", requires = "forward")]
    pub forward_header_file: Option<PathBuf>,
    /// Only these modules (comma-separated, e.g. tls,bash).
    #[arg(long, value_name = "LIST", value_delimiter = ',', requires = "forward")]
    pub forward_modules: Vec<String>,
    /// Only these event types (comma-separated: data, masterkey, conn,
    /// packet, bash, query); default: all but packet, sent only when named.
    #[arg(long, value_name = "LIST", value_delimiter = ',', requires = "forward")]
    pub forward_types: Vec<String>,
    /// CA bundle (PEM) for an https:// collector; default: the system's roots.
    #[arg(long, value_name = "FILE", requires = "forward")]
    pub forward_ca: Option<PathBuf>,
    /// Requests in flight at once, each on its own keep-alive connection
    /// (above 1, batches may arrive out of order; `seq` orders them);
    /// default 2, and 1 for http_proxy.
    #[arg(long, value_name = "N", requires = "forward")]
    pub forward_concurrency: Option<usize>,
    /// Bytes of batches queued for the collector before the oldest are dropped.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, requires = "forward")]
    pub forward_queue_bytes: usize,
    /// Also write every event to this file.
    #[arg(long, value_name = "PATH")]
    pub event_file: Option<PathBuf>,
    /// Format of the event file.
    #[arg(long, value_enum, default_value = "protobuf", requires = "event_file")]
    pub event_file_format: EventFileFormatArg,
    /// Rotate the event file when it would grow past this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20, requires = "event_file")]
    pub event_file_max_bytes: u64,
}

/// The event server (WebSocket stream, HTTP API, metrics).
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address of the API and event stream, or `none` to run without them.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:28256")]
    pub listen: String,
    /// Also serve the event stream alone, in eCaptureQ's meaning, on this
    /// address: `ws://HOST:PORT` as eCaptureQ passes it, or `HOST:PORT`
    /// (eCaptureQ's default is ws://127.0.0.1:28257).
    #[arg(long, value_name = "URL", value_parser = ecaptureq_addr)]
    pub ecaptureq: Option<SocketAddr>,
    /// Seconds between WebSocket heartbeats.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub heartbeat_secs: u64,
    /// Require `Authorization: Bearer TOKEN` (or `?token=` on the WebSocket
    /// upgrade) of every client, local ones too (a non-loopback --listen
    /// address needs it). Visible to
    /// every user in `ps`: prefer --auth-token-file or the
    /// RCAPTURE_AUTH_TOKEN environment variable.
    #[arg(long, value_name = "TOKEN", conflicts_with = "auth_token_file")]
    pub auth_token: Option<String>,
    /// Read the --auth-token from this file (its first line); the file must
    /// not be readable by group or others (chmod 600).
    #[arg(long, value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,
    /// Let a local user other than root use the server on a loopback address
    /// (repeatable, or a comma list of uids). Others get 403: the server
    /// serves every process's plaintext. eCaptureQ running as your user:
    /// --allow-uid $(id -u).
    #[arg(long, value_name = "UID", value_delimiter = ',')]
    pub allow_uid: Vec<u32>,
    /// Let the local users of these groups (primary or supplementary, from
    /// the user database) use the server (repeatable, or a comma list).
    #[arg(long, value_name = "GID", value_delimiter = ',')]
    pub allow_gid: Vec<u32>,
    /// Let pages of this browser origin (`http://host:port`) use the server
    /// (repeatable), and its host name be the `Host`; by default only
    /// loopback origins and names are served (cross-site requests, DNS
    /// rebinding). rcapture sends no CORS headers: such a page can open the
    /// WebSocket stream, not read API answers.
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// Serve everyone who can connect: any local user then reads every
    /// process's plaintext and can redirect it (POST /config), and a
    /// non-loopback --listen address needs no --auth-token.
    #[arg(long)]
    pub insecure: bool,
    /// Most simultaneous connections to the server.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// HTTP requests per second allowed per client address (429 beyond).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_requests_per_sec: u32,
    /// Entries queued per WebSocket client before its newest are dropped.
    #[arg(long, value_name = "N", default_value_t = 8192)]
    pub client_queue_frames: usize,
    /// Bytes queued per WebSocket client before its newest are dropped.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub client_queue_bytes: usize,
    /// Bytes of a WebSocket client's spill: entries copied out of the
    /// workers' batches once it holds its share of them (beyond: dropped
    /// for that client, reason "share").
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub client_spill_bytes: usize,
    /// Bytes all WebSocket clients' spills may hold together.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub spill_budget_bytes: usize,
    /// Seconds a WebSocket client may stay full before it is closed (1008).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub slow_client_secs: u64,
}

/// What `--ecaptureq` accepts, for its error messages.
const ECAPTUREQ_FORMS: &str = "expected ws://HOST:PORT or HOST:PORT, e.g. ws://127.0.0.1:28257";

/// `--ecaptureq`: `ws://HOST:PORT` (a path of `/` at most, as upstream's
/// URL) or `HOST:PORT`; HOST is an IP address or a name (the first IPv4
/// address it resolves to is used, else the first). The stream is served
/// at the root over plain WebSocket, so a path, a query, user info,
/// `wss://` or another scheme is refused.
pub fn ecaptureq_addr(s: &str) -> Result<SocketAddr, String> {
    let authority = match s.split_once("://") {
        Some(("ws", rest)) => match rest.find(['/', '?', '#']) {
            None => rest,
            Some(i) if &rest[i..] == "/" => &rest[..i],
            Some(i) => {
                return Err(format!(
                    "{:?} is not served: the stream is at the root ({ECAPTUREQ_FORMS})",
                    &rest[i..]
                ));
            }
        },
        Some(("wss", _)) => {
            return Err(format!(
                "wss:// is not served: the stream is plain WebSocket on a local address ({ECAPTUREQ_FORMS})"
            ));
        }
        Some((scheme, _)) => {
            return Err(format!(
                "scheme {scheme}:// is not served ({ECAPTUREQ_FORMS})"
            ));
        }
        None => s,
    };
    if authority.contains('@') {
        return Err(format!("user info is not accepted ({ECAPTUREQ_FORMS})"));
    }
    let (host, port) = authority
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && !p.is_empty() && !h.ends_with(':'))
        .ok_or_else(|| format!("{authority:?} has no HOST:PORT ({ECAPTUREQ_FORMS})"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?} is not a number 0-65535 ({ECAPTUREQ_FORMS})"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("host {host:?} does not resolve: {e} ({ECAPTUREQ_FORMS})"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("host {host:?} has no address ({ECAPTUREQ_FORMS})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        ecaptureq_addr(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    fn err(s: &str) -> String {
        let e = ecaptureq_addr(s).expect_err(s);
        assert!(e.contains("ws://HOST:PORT or HOST:PORT"), "{s}: {e}");
        e
    }

    /// The database subcommands name their module and pass their binary
    /// flag and --pid as the target request.
    #[test]
    fn database_subcommands_build_their_request() {
        for (sub, flag) in [("mysqld", "--mysqld"), ("postgres", "--postgres")] {
            let cli = Cli::try_parse_from(["rcapture", sub, flag, "/opt/db/bin", "--pid", "7"])
                .unwrap_or_else(|e| panic!("{sub}: {e}"));
            let (module, req, args) = cli.command.into_parts();
            assert_eq!(module, sub);
            assert_eq!(req.path, Some(PathBuf::from("/opt/db/bin")));
            assert_eq!((req.pid, args.pid), (Some(7), Some(7)));
            assert!(
                rcapture_ebpf::module::module(module).is_some(),
                "{module} is registered"
            );
        }
        assert!(Cli::try_parse_from(["rcapture", "postgres", "--mysqld", "x"]).is_err());
    }

    /// eCaptureQ's launch line, the plain address, IPv6 and names.
    #[test]
    fn ecaptureq_accepts_its_url_and_an_address() {
        assert_eq!(ok("ws://127.0.0.1:28257"), "127.0.0.1:28257");
        assert_eq!(ok("ws://127.0.0.1:28257/"), "127.0.0.1:28257");
        assert_eq!(ok("127.0.0.1:0"), "127.0.0.1:0");
        assert_eq!(ok("ws://[::1]:9"), "[::1]:9");
        assert_eq!(ok("[::1]:9"), "[::1]:9");
        assert_eq!(ok("ws://localhost:28257"), "127.0.0.1:28257");
        assert_eq!(ok("localhost:5"), "127.0.0.1:5");
    }

    /// `rcapture gnutls` names its module and takes its library from --gnutls.
    #[test]
    fn gnutls_subcommand_builds_its_target_request() {
        let cli = Cli::try_parse_from([
            "rcapture",
            "gnutls",
            "--gnutls",
            "/opt/lib/libgnutls.so.30",
            "--pid",
            "42",
            "-m",
            "keylog",
            "--keylogfile",
            "/tmp/k",
        ])
        .unwrap();
        let (module, req, capture) = cli.command.into_parts();
        assert_eq!(module, "gnutls");
        assert_eq!(
            req,
            TargetRequest {
                path: Some(PathBuf::from("/opt/lib/libgnutls.so.30")),
                pid: Some(42),
                symbols: Vec::new(),
            }
        );
        assert_eq!(capture.mode, OutputMode::Keylog);
        assert!(rcapture_ebpf::module::module(module).is_some());
        // The OpenSSL flag is not the GnuTLS module's.
        assert!(Cli::try_parse_from(["rcapture", "gnutls", "--libssl", "/x"]).is_err());
    }

    /// What it cannot serve is refused, saying why and what is accepted.
    #[test]
    fn ecaptureq_refuses_what_it_cannot_serve() {
        assert!(err("wss://127.0.0.1:28257").contains("wss:// is not served"));
        assert!(err("http://127.0.0.1:28257").contains("scheme http://"));
        assert!(err("ws://127.0.0.1:28257/ws").contains("\"/ws\" is not served"));
        assert!(err("ws://127.0.0.1:28257/?x=1").contains("\"/?x=1\""));
        assert!(err("ws://127.0.0.1:28257?x=1").contains("\"?x=1\""));
        assert!(err("ws://u@127.0.0.1:1").contains("user info"));
        assert!(err("ws://127.0.0.1").contains("no HOST:PORT"));
        assert!(err("127.0.0.1:http").contains("port \"http\""));
        assert!(err("127.0.0.1:70000").contains("port \"70000\""));
        assert!(err("no-such-host.invalid:1").contains("does not resolve"));
        // clap reports it as a usage error (exit status 2), naming the flag.
        let e = Cli::try_parse_from(["rcapture", "tls", "--ecaptureq", "wss://127.0.0.1:1"])
            .expect_err("refused");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--ecaptureq"), "{e}");
    }

    /// `--modules` takes names and `NAME=PATH`, comma-separated or repeated;
    /// an unknown name or an empty path is a usage error naming what exists.
    #[test]
    fn modules_flag_names_modules_and_their_paths() {
        let parse = |flags: &[&str]| {
            let argv = ["rcapture", "tls"].iter().chain(flags).copied();
            Cli::try_parse_from(argv).map(|c| c.command.into_parts())
        };
        let (module, req, a) = parse(&["--pid", "7", "--libssl", "/x/libssl.so.3"]).unwrap();
        assert_eq!(module, "tls");
        assert_eq!(
            req.path.as_deref(),
            Some(std::path::Path::new("/x/libssl.so.3"))
        );
        assert_eq!((req.pid, a.modules.len()), (Some(7), 0));
        let (_, _, a) = parse(&["--modules", "tls=/y/libssl.so.3"]).unwrap();
        assert_eq!(
            a.modules,
            vec![ExtraModule {
                name: "tls".into(),
                path: Some("/y/libssl.so.3".into())
            }]
        );
        assert_eq!(
            a.request(a.modules[0].path.clone()).path,
            Some(PathBuf::from("/y/libssl.so.3"))
        );
        let e = parse(&["--modules", "nope"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .contains("unknown module \"nope\" (available: tls"),
            "{e}"
        );
        let e = parse(&["--modules", "tls="]).unwrap_err().to_string();
        assert!(e.contains("a path is needed"), "{e}");
    }

    /// `rcapture nss` and `rcapture bash` name their modules; `--nspr` and
    /// `--bashpath` are their target files and the common flags come along.
    /// `--ssl-offsets` gives the tls request its symbol addresses.
    #[test]
    fn ssl_offsets_are_parsed_into_the_request() {
        let cli = Cli::try_parse_from([
            "rcapture",
            "tls",
            "--libssl",
            "/opt/app",
            "--ssl-offsets",
            "SSL_write=0x7c330,SSL_read=7be70",
        ])
        .unwrap();
        let (module, req, _) = cli.command.into_parts();
        assert_eq!(module, "tls");
        assert_eq!(
            req.symbols,
            [
                ("SSL_write".to_owned(), 0x7c330),
                ("SSL_read".to_owned(), 0x7be70)
            ]
        );
        for bad in ["SSL_write", "SSL_write=zz", "=0x10"] {
            assert!(
                Cli::try_parse_from(["rcapture", "tls", "--ssl-offsets", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn subcommands_take_their_target_and_the_common_flags() {
        for (sub, flag, path) in [
            ("nss", "--nspr", "/opt/nss/libnspr4.so"),
            ("bash", "--bashpath", "/opt/bash/bin/bash"),
        ] {
            let argv = [
                "rcapture",
                sub,
                flag,
                path,
                "--pid",
                "9",
                "--modules",
                "tls",
            ];
            let (module, req, a) = Cli::try_parse_from(argv).unwrap().command.into_parts();
            assert_eq!(module, sub);
            assert_eq!(req.path.as_deref(), Some(std::path::Path::new(path)));
            assert_eq!(req.pid, Some(9));
            assert_eq!(a.modules[0].name, "tls");
            let (_, req, _) = Cli::try_parse_from(["rcapture", sub])
                .unwrap()
                .command
                .into_parts();
            assert_eq!(req, TargetRequest::default(), "{sub}");
            // --libssl is the tls subcommand's.
            assert!(Cli::try_parse_from(["rcapture", sub, "--libssl", "/x"]).is_err());
        }
    }

    /// `-m none` is a mode; `-m` refuses anything else, listing the modes.
    #[test]
    fn output_modes() {
        let mode = |m: &str| {
            Cli::try_parse_from(["rcapture", "tls", "-m", m]).map(|c| c.command.into_parts().2.mode)
        };
        assert_eq!(mode("none").unwrap(), OutputMode::None);
        assert_eq!(mode("keylog").unwrap(), OutputMode::Keylog);
        assert_eq!(mode("pcap").unwrap(), OutputMode::Pcap);
        assert_eq!(mode("pcapng").unwrap(), OutputMode::Pcap);
        let e = mode("json").unwrap_err().to_string();
        assert!(e.contains("text, keylog, none, pcap"), "{e}");
    }
}
