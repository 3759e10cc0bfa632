//! A sender thread (one per request in flight): takes encoded requests
//! from the queue, delivers them over its own collector connection, and
//! applies the retry policy (the backoff pauses every sender: see the
//! queue); what happened is counted.

use super::client::HttpClient;
use super::config::{ForwardConfig, ForwardFormat};
use super::queue::SendQueue;
use super::retry::{RetryAction, classify_status};
use super::stats::Counters;
use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::SyncSender as Recycle;

/// See the module docs.
pub(crate) struct Sender {
    cfg: ForwardConfig,
    client: HttpClient,
    queue: Arc<SendQueue>,
    counters: Arc<Counters>,
    recycle: Recycle<Vec<u8>>,
    /// Request head up to `Content-Length: ` (batch formats).
    head_prefix: Vec<u8>,
    head: Vec<u8>,
}

impl Sender {
    pub fn new(
        cfg: ForwardConfig,
        client: HttpClient,
        queue: Arc<SendQueue>,
        counters: Arc<Counters>,
        recycle: Recycle<Vec<u8>>,
    ) -> Self {
        let mut head_prefix = Vec::new();
        let content_type = match cfg.format {
            ForwardFormat::Json => "application/x-ndjson",
            _ => "application/x-protobuf",
        };
        // Writing into a Vec cannot fail.
        let _ = write!(
            head_prefix,
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rcapture/{}\r\nContent-Type: {content_type}\r\n",
            cfg.url.path_and_query,
            cfg.url.host_header(),
            env!("CARGO_PKG_VERSION"),
        );
        if cfg.gzip {
            head_prefix.extend_from_slice(b"Content-Encoding: gzip\r\n");
        }
        for (k, v) in &cfg.headers {
            let _ = write!(head_prefix, "{k}: {v}\r\n");
        }
        head_prefix.extend_from_slice(b"Content-Length: ");
        Self {
            cfg,
            client,
            queue,
            counters,
            recycle,
            head_prefix,
            head: Vec::new(),
        }
    }

    /// Delivers until the queue is closed and empty, or aborted.
    pub fn run(mut self) {
        while let Some(o) = self.queue.pop() {
            let proxy = self.cfg.format == ForwardFormat::HttpProxy;
            self.head.clear();
            if !proxy {
                self.head.extend_from_slice(&self.head_prefix);
                let mut n = itoa::Buffer::new();
                self.head
                    .extend_from_slice(n.format(o.body.len()).as_bytes());
                self.head.extend_from_slice(b"\r\n\r\n");
            }
            let action =
                match self
                    .client
                    .send(&self.head, &o.body, proxy && o.body.starts_with(b"HEAD "))
                {
                    Ok(r) if proxy => {
                        // The proxy's answer is the replayed server's: any
                        // response means the request was delivered, except the
                        // proxy's own refusal.
                        if r.status == 407 {
                            self.counters.error(format!(
                                "proxy {} answered 407 (authentication required)",
                                self.cfg.url.raw
                            ));
                            RetryAction::Fail
                        } else {
                            RetryAction::Done
                        }
                    }
                    Ok(r) => {
                        let a = classify_status(r.status, r.retry_after);
                        if a != RetryAction::Done {
                            self.counters
                                .error(format!("{} answered HTTP {}", self.cfg.url.raw, r.status));
                        }
                        a
                    }
                    // Cut short by the shutdown deadline: not the collector's
                    // error (the events are counted as dropped below).
                    Err(_) if self.queue.is_aborted() => RetryAction::Retry(None),
                    Err(e) => {
                        self.counters.error(e.to_string());
                        RetryAction::Retry(None)
                    }
                };
            match action {
                RetryAction::Done => {
                    self.queue.answered();
                    Counters::add(&self.counters.sent_events, o.events);
                    Counters::add(&self.counters.sent_batches, 1);
                    // The batcher reuses the buffer; if its pool is full or
                    // it is gone, the buffer is not needed.
                    let _ = self.recycle.try_send(o.body);
                }
                RetryAction::Fail => {
                    self.queue.answered();
                    Counters::add(&self.counters.failed_events, o.events);
                    Counters::add(&self.counters.failed_batches, 1);
                    // The batcher reuses the buffer; if its pool is full or
                    // it is gone, the buffer is not needed.
                    let _ = self.recycle.try_send(o.body);
                }
                RetryAction::Retry(after) => {
                    if self.queue.is_aborted() {
                        Counters::add(&self.counters.dropped_events, o.events);
                        break;
                    }
                    let retry = &self.cfg.retry;
                    self.queue
                        .retry_later(o, |failures| retry.delay(failures, after));
                    // Counted once the pause is set: whoever sees the
                    // retry sees the other senders held back too.
                    Counters::add(&self.counters.retries, 1);
                }
            }
        }
    }
}
