//! NDJSON straight into ClickHouse's HTTP interface (`FORMAT JSONEachRow`),
//! plain and gzip'd, against a throw-away clickhouse-server.

use crate::config;
use crate::support::{Proc, TempDir, batch, event, free_port, have_tool, wait_for};
use rcapture_net::forward::{ForwardFormat, Forwarder};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The table of the README's ClickHouse section.
pub const TABLE: &str = "CREATE TABLE rcapture.events (
    timestamp Int64, uuid String, src_ip String, src_port UInt32,
    dst_ip String, dst_port UInt32, pid Int64, pname String, type UInt32,
    length UInt32, payload String, tid UInt32, uid UInt32, module String,
    fd UInt32, truncated UInt32, status Int32, seq UInt64
) ENGINE = MergeTree() ORDER BY (timestamp, seq)";

/// Runs `sql` over ClickHouse's HTTP interface: the response body.
fn query(port: u16, sql: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let req = format!(
        "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{sql}",
        sql.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or("no response head")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("{head}\n{body}"));
    }
    Ok(body.to_string())
}

fn server_config(dir: &TempDir, http: u16, tcp: u16) -> std::path::PathBuf {
    let d = dir.0.display();
    let users = dir.path("users.xml");
    std::fs::write(
        &users,
        "<?xml version=\"1.0\"?>\n<yandex>\n  <profiles><default></default></profiles>\n  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>\n  <quotas><default></default></quotas>\n</yandex>\n",
    )
    .expect("write users.xml");
    let cfg = dir.path("config.xml");
    std::fs::write(
        &cfg,
        format!(
            "<?xml version=\"1.0\"?>\n<yandex>\n  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog><console>0</console></logger>\n  <http_port>{http}</http_port>\n  <tcp_port>{tcp}</tcp_port>\n  <listen_host>127.0.0.1</listen_host>\n  <path>{d}/data/</path>\n  <tmp_path>{d}/tmp/</tmp_path>\n  <user_files_path>{d}/user_files/</user_files_path>\n  <format_schema_path>{d}/format_schemas/</format_schema_path>\n  <users_config>{}</users_config>\n  <default_profile>default</default_profile>\n  <default_database>default</default_database>\n  <mark_cache_size>104857600</mark_cache_size>\n</yandex>\n",
            users.display()
        ),
    )
    .expect("write config.xml");
    cfg
}

#[test]
fn ndjson_into_clickhouse() {
    if !have_tool("clickhouse-server") {
        return;
    }
    let dir = TempDir::new("clickhouse");
    let (http, tcp) = (free_port(), free_port());
    let cfg_file = server_config(&dir, http, tcp);
    let server = Command::new("clickhouse-server")
        .arg(format!("--config-file={}", cfg_file.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start clickhouse-server");
    let _server = Proc(server);
    assert!(
        wait_for(Duration::from_secs(60), || query(http, "SELECT 1").is_ok()),
        "clickhouse-server answers on {http}: {}",
        std::fs::read_to_string(dir.path("error.log")).unwrap_or_default()
    );
    query(http, "CREATE DATABASE rcapture").expect("create database");
    query(http, TABLE).expect("create table");

    let url = format!(
        "http://127.0.0.1:{http}/?query=INSERT%20INTO%20rcapture.events%20FORMAT%20JSONEachRow&input_format_skip_unknown_fields=1"
    );
    for gzip in [false, true] {
        let mut cfg = config(&url, ForwardFormat::Json);
        cfg.gzip = gzip;
        cfg.batch_size = 50;
        let f = Forwarder::start(cfg).expect("start");
        let ids: Vec<String> = (0..120)
            .map(|i| format!("gz{}-{i}", u8::from(gzip)))
            .collect();
        let payloads: Vec<String> = (0..120)
            .map(|i| format!("GET /{i} HTTP/1.1\r\n\"quoted\"\t"))
            .collect();
        let evs: Vec<_> = (0..120)
            .map(|i| {
                event(
                    1_764_133_728_000_000_000 + i as i64,
                    &ids[i],
                    "tls",
                    payloads[i].as_bytes(),
                )
            })
            .collect();
        f.offer(&batch(&evs[..70]));
        f.offer(&batch(&evs[70..]));
        let stats = f.shutdown(Duration::from_secs(15));
        assert_eq!(
            (
                stats.sent_events,
                stats.sent_batches,
                stats.failed_batches,
                stats.dropped_events
            ),
            (120, 3, 0, 0),
            "{stats:?}"
        );
        let got = query(
            http,
            &format!(
                "SELECT count(), uniqExact(uuid), min(seq), max(seq), sum(length), any(pname), any(module) FROM rcapture.events WHERE uuid LIKE 'gz{}-%'",
                u8::from(gzip)
            ),
        )
        .expect("select");
        let want_len: usize = payloads.iter().map(String::len).sum();
        assert_eq!(
            got.trim(),
            format!("120\t120\t1\t120\t{want_len}\tcurl\ttls"),
            "gzip {gzip}"
        );
        let p = query(
            http,
            &format!(
                "SELECT payload FROM rcapture.events WHERE uuid = 'gz{}-7'",
                u8::from(gzip)
            ),
        )
        .expect("select payload");
        use base64::Engine;
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(p.trim())
                .expect("base64"),
            payloads[7].as_bytes()
        );
    }
}
