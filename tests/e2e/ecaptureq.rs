//! rcapture driven the way eCaptureQ drives eCapture: a client with
//! eCaptureQ's receive path (tokio-tungstenite, `Origin: http://localhost/`,
//! the root path, binary frames decoded as `LogEntry` with prost, a new
//! attempt 300 ms after a failed connect or a lost connection, and none
//! after a clean close) started before rcapture; `tls --ecaptureq
//! ws://127.0.0.1:PORT`; SIGINT and SIGKILL 1 s later; a restart on the
//! same port.

use crate::testutil::{Rcapture, TempDir, bpf_available, python_server, run_ok};
use futures_util::StreamExt;
use prost::Message as _;
use rcapture_proto::{Event, LogEntry, log_entry::Payload};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{
    Message, client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig,
};

/// What the client saw, in order.
#[derive(Debug)]
enum Seen {
    Connected,
    Entry(LogEntry),
    /// The connection failed (no close frame): it tries again in 300 ms.
    Lost(String),
    /// A clean close: eCaptureQ's loop then waits forever (it never
    /// reconnects), and so does this client.
    ClosedCleanly,
}

/// eCaptureQ's `WebsocketService::receiver_task` (src-tauri/src/services/
/// websocket.rs), reporting what it sees instead of filling its DataFrame.
async fn receiver(url: String, tx: mpsc::Sender<Seen>) {
    loop {
        let mut request = url.as_str().into_client_request().expect("a ws URL");
        request
            .headers_mut()
            .insert("Origin", HeaderValue::from_static("http://localhost/"));
        let config = WebSocketConfig::default();
        let ws = match tokio_tungstenite::connect_async_with_config(request, Some(config), false)
            .await
        {
            Ok((ws, _)) => ws,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        };
        if tx.send(Seen::Connected).is_err() {
            return;
        }
        let (_, mut read) = ws.split();
        loop {
            match read.next().await {
                Some(Ok(Message::Binary(b))) => match LogEntry::decode(b.as_ref()) {
                    Ok(e) => {
                        if tx.send(Seen::Entry(e)).is_err() {
                            return;
                        }
                    }
                    Err(e) => panic!("a frame that is not a LogEntry: {e}"),
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = tx.send(Seen::Lost(e.to_string()));
                    break;
                }
                None => {
                    let _ = tx.send(Seen::ClosedCleanly);
                    // eCaptureQ's select! loses its only stream branch here.
                    std::future::pending::<()>().await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Starts the client on its own thread (it outlives the test's processes).
fn start_client(url: String) -> mpsc::Receiver<Seen> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(receiver(url, tx));
    });
    rx
}

fn event(s: &Seen) -> Option<&Event> {
    match s {
        Seen::Entry(LogEntry {
            payload: Some(Payload::EventPayload(e)),
            ..
        }) => Some(e),
        _ => None,
    }
}

fn is_heartbeat(s: &Seen) -> bool {
    matches!(
        s,
        Seen::Entry(LogEntry {
            payload: Some(Payload::HeartbeatPayload(_)),
            ..
        })
    )
}

/// Collects what the client sees until `done` holds of it (or panics
/// after `within`).
fn until(
    rx: &mpsc::Receiver<Seen>,
    seen: &mut Vec<Seen>,
    within: Duration,
    what: &str,
    done: impl Fn(&[Seen]) -> bool,
) {
    let deadline = Instant::now() + within;
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) => seen.push(s),
            Err(_) => panic!("{what}: not seen within {within:?}; the client saw {seen:#?}"),
        }
    }
}

/// `N` of `rcapture: stopped by signal 2: N events, ...`.
fn captured(stderr: &[String]) -> u64 {
    stderr
        .iter()
        .find_map(|l| {
            l.split_once("stopped by signal ")?
                .1
                .split_once(": ")?
                .1
                .split_once(' ')
        })
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no exit ledger: {stderr:#?}"))
}

#[test]
fn ecaptureq_launches_reads_labels_stops_and_reconnects() {
    let Some(_serial) = bpf_available("ecaptureq_launches_reads_labels_stops_and_reconnects")
    else {
        return;
    };
    let dir = TempDir::new("ecaptureq");
    let (_srv, port) = python_server(&dir, false);
    let eq_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{eq_port}");
    // eCaptureQ starts its client, then launches the capture program.
    let rx = start_client(url.clone());
    std::thread::sleep(Duration::from_millis(400));
    let rc = Rcapture::start(&["tls", "--ecaptureq", &url]);
    let mut seen = Vec::new();
    until(
        &rx,
        &mut seen,
        Duration::from_secs(5),
        "connect and heartbeat",
        |s| s.iter().any(is_heartbeat),
    );
    assert!(matches!(seen[0], Seen::Connected), "{seen:#?}");

    let m = format!("ecaptureq-{}", std::process::id());
    let (curl, _) = run_ok(
        Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-H"])
            .arg(format!("X-Unique: {m}"))
            .arg(format!("https://127.0.0.1:{port}/eq")),
    );
    let of_curl = |e: &Event| e.pid == i64::from(curl) && e.module == "tls";
    let is_request = |e: &Event| of_curl(e) && String::from_utf8_lossy(&e.payload).contains(&m);
    let is_response = |e: &Event| of_curl(e) && e.payload.starts_with(b"HTTP/1.1 200 ");
    until(
        &rx,
        &mut seen,
        Duration::from_secs(10),
        "curl's request and response",
        |s| {
            s.iter().filter_map(event).any(is_request)
                && s.iter().filter_map(event).any(is_response)
        },
    );
    let req = seen
        .iter()
        .filter_map(event)
        .find(|e| is_request(e))
        .unwrap();
    let resp = seen
        .iter()
        .filter_map(event)
        .find(|e| is_response(e))
        .unwrap();
    assert_eq!(req.r#type, 1, "HttpRequest: {req:?}");
    assert_eq!(
        resp.r#type, 3,
        "HttpResponse (WIRE.md's stream says 0, a receive)"
    );
    let server = format!("127.0.0.1:{port}");
    let client = format!("{}:{}", req.src_ip, req.src_port);
    assert_eq!(format!("{}:{}", req.dst_ip, req.dst_port), server);
    assert!(
        req.src_port != 0 && req.src_port != u32::from(port),
        "{req:?}"
    );
    assert_eq!(
        (
            format!("{}:{}", resp.src_ip, resp.src_port),
            format!("{}:{}", resp.dst_ip, resp.dst_port)
        ),
        (client, server),
        "the response is shown client -> server too"
    );

    // eCaptureQ's stop: SIGINT, SIGKILL one second later.
    let stop = rc.stop_like_ecaptureq();
    assert!(
        stop.exited_by_itself,
        "rcapture was still running 1 s after SIGINT: {:#?}",
        stop.stderr
    );
    assert!(stop.success, "exit status: {:#?}", stop.stderr);
    eprintln!("rcapture stopped {:?} after SIGINT", stop.took);
    until(
        &rx,
        &mut seen,
        Duration::from_secs(5),
        "the connection lost",
        |s| {
            s.iter()
                .any(|x| matches!(x, Seen::Lost(_) | Seen::ClosedCleanly))
        },
    );
    assert!(
        !seen.iter().any(|x| matches!(x, Seen::ClosedCleanly)),
        "a clean close: eCaptureQ would never reconnect"
    );
    let lost = seen.iter().find_map(|x| match x {
        Seen::Lost(e) => Some(e.as_str()),
        _ => None,
    });
    eprintln!("the client lost the connection: {lost:?}");
    let got = seen.iter().filter_map(event).count() as u64;
    assert_eq!(
        got,
        captured(&stop.stderr),
        "every event of the run reached eCaptureQ"
    );

    // Restarted under the running client: it comes back by itself.
    let before = seen.len();
    let rc = Rcapture::start(&["tls", "--ecaptureq", &url]);
    until(
        &rx,
        &mut seen,
        Duration::from_secs(5),
        "reconnect and heartbeat",
        |s| s[before..].iter().any(is_heartbeat),
    );
    assert!(
        seen[before..].iter().any(|x| matches!(x, Seen::Connected)),
        "{:#?}",
        &seen[before..]
    );
    rc.stop();
}
