//! `rcapture tls` without `--pid`/`--libssl`: every OpenSSL in use. At
//! start-up the system's libssl, every `libssl.so*` mapped by a running
//! process (opened through `/proc/PID/root` or `/proc/PID/map_files`, so a
//! container's copy is its own file) and every running executable with
//! OpenSSL linked in; later, the libraries and executables the watch
//! (`rcapture_ebpf::libwatch`) reports. One attachment per file (device and
//! inode), whatever the number of processes mapping it.
//!
//! A process that maps a libssl not yet known, without a controlling
//! terminal, is stopped by the watch at that mmap; this thread attaches the
//! file and sends it SIGCONT (also after a failed attach, after
//! [`HOLD_TIMEOUT`], and at shutdown), so its first TLS call is captured
//! however short it lives.

use rcapture_ebpf::libwatch::{FileId, LibWatch, WatchEvent};
use rcapture_ebpf::module::Target;
use rcapture_ebpf::{Capture, OpensslTarget};
use rcapture_net::control::DiscoveryStatus;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// What a shared libssl's file name starts with (not NSS's `libssl3.so`).
const LIBSSL_PREFIX: &str = "libssl.so";
/// A held process is resumed after this even if its library is not attached.
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(2);
/// How often `/proc/*/maps` is read again (process counts, missed files).
const SCAN_EVERY: Duration = Duration::from_secs(2);
/// Executables larger than this are not read to look for OpenSSL.
const MAX_EXE_BYTES: u64 = 512 << 20;

/// One file-backed mapping of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub file: FileId,
    /// The path as the process sees it (` (deleted)` removed).
    pub path: String,
}

/// The file-backed mappings of a `/proc/PID/maps` text (inode ≠ 0, a path).
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.splitn(6, ' ');
            let range = cols.next()?;
            let _perms = cols.next()?;
            let _offset = cols.next()?;
            let dev = cols.next()?;
            let ino = cols.next()?;
            let path = cols.next()?.trim_start();
            if ino == "0" || !path.starts_with('/') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                file: FileId::from_maps(dev, ino)?,
                path: path.strip_suffix(" (deleted)").unwrap_or(path).to_owned(),
            })
        })
        .collect()
}

/// A shared OpenSSL libssl by its file name (`libssl.so`, `.so.3`, `.so.1.1`; not `libssl3.so`).
pub fn is_libssl(path: &str) -> bool {
    Path::new(path)
        .file_name()
        .is_some_and(|n| n.as_encoded_bytes().starts_with(LIBSSL_PREFIX.as_bytes()))
}

/// Each distinct file once, in first-seen order.
pub fn dedupe<T>(items: impl IntoIterator<Item = (FileId, T)>) -> Vec<(FileId, T)> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|(id, _)| seen.insert(*id))
        .collect()
}

/// A file found through a process: how to open it and where it was seen.
#[derive(Debug, Clone)]
pub struct Found {
    /// Through `/proc/PID/root/…` (or `/proc/PID/map_files/…`).
    pub path: PathBuf,
    pub id: FileId,
    pub pid: u32,
    /// The path inside the process's mount namespace.
    pub process_path: String,
    pub mount_ns: Option<String>,
}

/// Where an attached file was found (for `/status`).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub process_path: Option<String>,
    pub mount_ns: Option<String>,
}

/// What `/status` reads, written by the discovery thread.
#[derive(Debug, Default)]
pub struct Shared {
    pub origins: Mutex<HashMap<FileId, Origin>>,
    /// Processes mapping each attached file, and when they were counted.
    pub counts: Mutex<(HashMap<FileId, u64>, Option<Instant>)>,
    pub watching: AtomicBool,
    attached_later: AtomicU64,
    refused: AtomicU64,
    held: AtomicU64,
    resumed: AtomicU64,
    timeouts: AtomicU64,
    hold_us_last: AtomicU64,
    hold_us_max: AtomicU64,
    hold_us_total: AtomicU64,
    events_lost: AtomicU64,
    signals_failed: AtomicU64,
    executables_checked: AtomicU64,
}

impl Shared {
    /// The counters as `/status` shows them.
    pub fn status(&self) -> DiscoveryStatus {
        let last = lock(&self.counts).1;
        DiscoveryStatus {
            watching: self.watching.load(Relaxed),
            attached_later: self.attached_later.load(Relaxed),
            refused: self.refused.load(Relaxed),
            held: self.held.load(Relaxed),
            resumed: self.resumed.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            hold_us_last: self.hold_us_last.load(Relaxed),
            hold_us_max: self.hold_us_max.load(Relaxed),
            hold_us_total: self.hold_us_total.load(Relaxed),
            events_lost: self.events_lost.load(Relaxed),
            signals_failed: self.signals_failed.load(Relaxed),
            executables_checked: self.executables_checked.load(Relaxed),
            last_scan_secs_ago: last.map(|t| t.elapsed().as_secs()),
        }
    }

    /// Processes mapping `id` at the last scan.
    pub fn processes(&self, id: FileId) -> Option<u64> {
        let c = lock(&self.counts);
        c.1.map(|_| c.0.get(&id).copied().unwrap_or(0))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The set of known files: attached ones, refused ones, checked executables.
#[derive(Debug, Default)]
pub struct Finder {
    /// Any id a file was seen under (stat, maps, the watch) → its stat id.
    aliases: HashMap<FileId, FileId>,
    attached: HashSet<FileId>,
    refused: HashSet<FileId>,
    /// Executables already looked at (by id), OpenSSL or not.
    exes: HashSet<FileId>,
    pub shared: Arc<Shared>,
}

impl Finder {
    /// Whether `id` (under any alias) was attached or refused.
    fn known(&self, id: FileId) -> Option<FileId> {
        self.aliases.get(&id).copied()
    }

    fn alias(&mut self, id: FileId, canonical: FileId) {
        self.aliases.insert(id, canonical);
    }

    /// Records the system's libssl (found by the module's own resolver).
    pub fn system(&mut self, t: &Target) {
        if let Ok(id) = FileId::of(&t.path) {
            self.attached.insert(id);
            self.alias(id, id);
        }
    }

    /// Checks a found file: `Some(target)` if it is new and OpenSSL;
    /// `None` if known (its alias recorded) or refused (a note printed once).
    pub fn consider(&mut self, f: &Found, what: &str) -> Option<Target> {
        if self.known(f.id).is_some() {
            return None;
        }
        match OpensslTarget::inspect(f.path.clone()).and_then(|t| t.target()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.refuse(f.id);
                eprintln!(
                    "rcapture: note: module tls: not probing {} ({what} of pid {}, {}): {e}",
                    f.path.display(),
                    f.pid,
                    f.process_path
                );
                None
            }
        }
    }

    fn refuse(&mut self, id: FileId) {
        self.refused.insert(id);
        self.alias(id, id);
        self.shared.refused.fetch_add(1, Relaxed);
    }

    /// Records the outcome of attaching `t` (found as `f`).
    pub fn attached(&mut self, f: &Found, t: &Target, r: Result<usize, String>, later: bool) {
        match r {
            Ok(probes) => {
                self.attached.insert(f.id);
                self.alias(f.id, f.id);
                lock(&self.shared.origins).insert(
                    f.id,
                    Origin {
                        process_path: Some(f.process_path.clone()),
                        mount_ns: f.mount_ns.clone(),
                    },
                );
                if later {
                    self.shared.attached_later.fetch_add(1, Relaxed);
                    eprintln!(
                        "rcapture: module tls: probing {} (version {}) with {probes} probes (found: pid {} maps {}{})",
                        t.path.display(),
                        t.version,
                        f.pid,
                        f.process_path,
                        f.mount_ns
                            .as_deref()
                            .map(|n| format!(" in mount namespace {n}"))
                            .unwrap_or_default()
                    );
                }
                for n in &t.notes {
                    eprintln!("rcapture: note: module tls: {}: {n}", t.path.display());
                }
            }
            Err(e) => {
                self.attached.remove(&f.id);
                self.refuse(f.id);
                eprintln!(
                    "rcapture: note: module tls: not probing {} (pid {}): {e}",
                    t.path.display(),
                    f.pid
                );
            }
        }
    }

    /// The libssl copies and OpenSSL executables of every running process,
    /// each file once, not yet known.
    pub fn scan(&mut self, counts: Option<&mut HashMap<FileId, u64>>) -> Vec<(Found, Target)> {
        let mut out = Vec::new();
        let mut counts = counts;
        let me = std::process::id();
        for pid in pids() {
            if pid == me {
                continue;
            }
            let Ok(text) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
                continue;
            };
            let maps = parse_maps(&text);
            let mut counted = HashSet::new();
            // Each file once per process (a library has several mappings).
            for (_, m) in dedupe(maps.iter().map(|m| (m.file, m))) {
                if let Some(c) = self.known(m.file) {
                    if self.attached.contains(&c)
                        && counted.insert(c)
                        && let Some(n) = counts.as_deref_mut()
                    {
                        *n.entry(c).or_default() += 1;
                    }
                    continue;
                }
                if !is_libssl(&m.path) {
                    continue;
                }
                let Some(f) = found_in_maps(pid, m) else {
                    continue;
                };
                let t = self.consider(&f, "mapped");
                self.alias(m.file, f.id);
                if let Some(t) = t {
                    if let Some(n) = counts.as_deref_mut() {
                        *n.entry(f.id).or_default() += 1;
                    }
                    counted.insert(f.id);
                    // Seen again in later processes: already a candidate.
                    self.attached.insert(f.id);
                    out.push((f, t));
                }
            }
            if let Some(exe) = maps.first().map(|m| m.file)
                && self.exes.contains(&exe)
            {
                continue;
            }
            if let Some((f, t)) = self.check_exe(pid) {
                if let Some(n) = counts.as_deref_mut() {
                    *n.entry(f.id).or_default() += 1;
                }
                self.attached.insert(f.id);
                out.push((f, t));
            }
        }
        out
    }

    /// The executable of `pid`, if it has OpenSSL linked in and is new.
    pub fn check_exe(&mut self, pid: u32) -> Option<(Found, Target)> {
        let link = PathBuf::from(format!("/proc/{pid}/exe"));
        let id = FileId::of(&link).ok()?;
        if !self.exes.insert(id) || self.known(id).is_some() {
            return None;
        }
        self.shared.executables_checked.fetch_add(1, Relaxed);
        let inner = fs::read_link(&link).ok()?;
        let inner = inner.to_string_lossy().into_owned();
        let size = fs::metadata(&link).ok()?.len();
        if size > MAX_EXE_BYTES {
            return None;
        }
        let bytes = fs::read(&link).ok()?;
        memchr::memmem::find(&bytes, b"\0SSL_write\0")?;
        drop(bytes);
        // Defined, not only imported from a shared libssl.
        if !rcapture_ebpf::defines_ssl_write(&link) {
            return None;
        }
        let path = through_root(pid, &inner, id).unwrap_or(link);
        let f = Found {
            path,
            id,
            pid,
            process_path: inner,
            mount_ns: mount_ns(pid),
        };
        let t = self.consider(&f, "the executable")?;
        Some((f, t))
    }

    /// Marks `id` (as the watch names it) known: the watch stops reporting it.
    fn mark(&self, watch: &mut Option<LibWatch>, id: FileId, canonical: FileId) {
        if let Some(w) = watch.as_mut() {
            for i in [id, canonical] {
                if let Err(e) = w.library_done(i) {
                    eprintln!("rcapture: warning: module tls: discovery: {e}");
                }
            }
        }
    }
}

/// Every numeric entry of /proc.
fn pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// `inner` (a path in `pid`'s mount namespace) through `/proc/PID/root`, if
/// that is the file `id`.
fn through_root(pid: u32, inner: &str, id: FileId) -> Option<PathBuf> {
    let p = PathBuf::from(format!("/proc/{pid}/root")).join(inner.trim_start_matches('/'));
    (FileId::of(&p).ok()? == id).then_some(p)
}

fn mount_ns(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// A mapped file: through the process's root if that is the same file, else
/// `/proc/PID/map_files/START-END`.
fn found_in_maps(pid: u32, m: &Mapping) -> Option<Found> {
    let path = through_root(pid, &m.path, m.file).or_else(|| {
        let p = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
        p.exists().then_some(p)
    })?;
    Some(Found {
        id: FileId::of(&path).ok()?,
        path,
        pid,
        process_path: m.path.clone(),
        mount_ns: mount_ns(pid),
    })
}

/// The file behind descriptor `fd` of `pid` (the watch's mmap fd).
fn found_by_fd(pid: u32, fd: i32, id: FileId) -> Option<Found> {
    let link = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
    let inner = fs::read_link(&link).ok()?.to_string_lossy().into_owned();
    let inner = inner
        .strip_suffix(" (deleted)")
        .unwrap_or(&inner)
        .to_owned();
    let path = through_root(pid, &inner, id)
        .or_else(|| {
            // Another id through the root (e.g. overlayfs): accept the
            // root's path if it is the fd's file.
            let p = PathBuf::from(format!("/proc/{pid}/root")).join(inner.trim_start_matches('/'));
            (FileId::of(&p).ok()? == FileId::of(&link).ok()?).then_some(p)
        })
        .unwrap_or_else(|| link.clone());
    Some(Found {
        id: FileId::of(&path).ok()?,
        path,
        pid,
        process_path: inner,
        mount_ns: mount_ns(pid),
    })
}

fn now_mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

fn sigcont(pid: u32) -> bool {
    // SAFETY: kill(2) with a pid the watch reported and a valid signal.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) == 0 }
}

/// A process stopped by the watch.
#[derive(Debug)]
struct Held {
    /// The event's time (CLOCK_MONOTONIC ns).
    since_ns: u64,
    file: FileId,
}

/// The discovery thread's state.
pub struct Discovery {
    pub finder: Finder,
    pub watch: Option<LibWatch>,
    pub probes: Arc<Mutex<Capture>>,
    held: HashMap<u32, Held>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl Discovery {
    pub fn new(finder: Finder, watch: Option<LibWatch>, probes: Arc<Mutex<Capture>>) -> Self {
        finder.shared.watching.store(watch.is_some(), Relaxed);
        let mut me = Self {
            finder,
            watch,
            probes,
            held: HashMap::new(),
        };
        // The files attached at start-up: the watch ignores them from now on.
        let known: Vec<(FileId, FileId)> =
            me.finder.aliases.iter().map(|(a, c)| (*a, *c)).collect();
        for (a, c) in known {
            me.finder.mark(&mut me.watch, a, c);
        }
        // And the executables already looked at are not reported again.
        if let Some(w) = me.watch.as_mut() {
            for id in &me.finder.exes {
                if let Err(e) = w.exec_known(*id) {
                    eprintln!("rcapture: warning: module tls: discovery: {e}");
                    break;
                }
            }
        }
        me
    }

    /// Runs until `stop`: watch events, timeouts, scans; then detaches the
    /// watch and resumes every held process.
    pub fn run(mut self, stop: &AtomicBool) {
        let mut last_scan: Option<Instant> = None;
        while !stop.load(Relaxed) {
            if let Some(w) = &self.watch {
                let mut pfd = libc::pollfd {
                    fd: w.poll_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one pollfd we own, a valid descriptor.
                unsafe { libc::poll(&mut pfd, 1, 100) };
            } else {
                std::thread::sleep(Duration::from_millis(100));
            }
            while let Some(ev) = self.watch.as_mut().and_then(LibWatch::next_event) {
                self.handle(ev);
            }
            self.timeouts();
            if last_scan.is_none_or(|t| t.elapsed() >= SCAN_EVERY) {
                self.rescan();
                last_scan = Some(Instant::now());
            }
            if let Some(w) = &self.watch {
                let (lost, failed) = w.lost();
                self.finder.shared.events_lost.store(lost, Relaxed);
                self.finder.shared.signals_failed.store(failed, Relaxed);
            }
        }
        self.shutdown();
    }

    fn handle(&mut self, ev: WatchEvent) {
        match ev {
            WatchEvent::Library {
                pid,
                file,
                fd,
                held,
                ktime_ns,
                ..
            } => {
                if held {
                    self.finder.shared.held.fetch_add(1, Relaxed);
                    self.held.insert(
                        pid,
                        Held {
                            since_ns: ktime_ns,
                            file,
                        },
                    );
                }
                if let Some(c) = self.finder.known(file) {
                    self.finder.mark(&mut self.watch, file, c);
                    self.resume_file(file);
                    return;
                }
                match found_by_fd(pid, fd, file) {
                    Some(f) => {
                        self.attach_found(&f);
                        self.finder.alias(file, f.id);
                        self.finder.mark(&mut self.watch, file, f.id);
                    }
                    None => {
                        // Gone before it could be read: the next process
                        // mapping the file is reported again.
                    }
                }
                self.resume_file(file);
            }
            WatchEvent::Exec { pid, .. } => {
                if let Some((f, t)) = self.finder.check_exe(pid) {
                    self.attach(&f, &t);
                }
            }
        }
    }

    fn attach_found(&mut self, f: &Found) {
        if let Some(t) = self.finder.consider(f, "mapped") {
            self.attach(f, &t);
        }
    }

    fn attach(&mut self, f: &Found, t: &Target) {
        let r = {
            let mut p = lock(&self.probes);
            p.add_target(t)
        };
        let r = r
            .map(|(info, warnings)| {
                for w in warnings {
                    eprintln!("rcapture: warning: {w}");
                }
                info.probes
            })
            .map_err(|e| e.to_string());
        self.finder.attached(f, t, r, true);
    }

    /// SIGCONT to every process held for `file` (under any alias).
    fn resume_file(&mut self, file: FileId) {
        let canonical = self.finder.known(file);
        let now = now_mono_ns();
        let pids: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, h)| {
                h.file == file || (canonical.is_some() && self.finder.known(h.file) == canonical)
            })
            .map(|(p, _)| *p)
            .collect();
        for pid in pids {
            if let Some(h) = self.held.remove(&pid) {
                self.resume(pid, &h, now, false);
            }
        }
    }

    fn resume(&self, pid: u32, h: &Held, now: u64, timeout: bool) {
        sigcont(pid);
        let s = &self.finder.shared;
        if timeout {
            s.timeouts.fetch_add(1, Relaxed);
        } else {
            s.resumed.fetch_add(1, Relaxed);
        }
        let us = now.saturating_sub(h.since_ns) / 1000;
        s.hold_us_last.store(us, Relaxed);
        s.hold_us_max.fetch_max(us, Relaxed);
        s.hold_us_total.fetch_add(us, Relaxed);
    }

    fn timeouts(&mut self) {
        let now = now_mono_ns();
        let limit = HOLD_TIMEOUT.as_nanos() as u64;
        let late: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, h)| now.saturating_sub(h.since_ns) >= limit)
            .map(|(p, _)| *p)
            .collect();
        for pid in late {
            if let Some(h) = self.held.remove(&pid) {
                self.resume(pid, &h, now, true);
            }
        }
    }

    /// Counts the processes of every attached file and attaches files the
    /// watch did not report (a full ring, no watch).
    fn rescan(&mut self) {
        let mut counts = HashMap::new();
        let found = self.finder.scan(Some(&mut counts));
        for (f, t) in found {
            self.attach(&f, &t);
            self.finder.mark(&mut self.watch, f.id, f.id);
        }
        *lock(&self.finder.shared.counts) = (counts, Some(Instant::now()));
    }

    fn shutdown(&mut self) {
        if let Some(w) = self.watch.as_mut() {
            w.detach();
            // Stopped between the last poll and the detach.
            while let Some(ev) = w.next_event() {
                if let WatchEvent::Library {
                    pid,
                    held: true,
                    file,
                    ktime_ns,
                    ..
                } = ev
                {
                    self.finder.shared.held.fetch_add(1, Relaxed);
                    self.held.insert(
                        pid,
                        Held {
                            since_ns: ktime_ns,
                            file,
                        },
                    );
                }
            }
        }
        self.finder.shared.watching.store(false, Relaxed);
        let now = now_mono_ns();
        for (pid, h) in std::mem::take(&mut self.held) {
            self.resume(pid, &h, now, false);
        }
    }
}

/// When a file was attached, in Unix seconds.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a02000 r--p 00000000 fd:01 1835041                    /usr/bin/python3.11
7f1c2c000000-7f1c2c021000 rw-p 00000000 00:00 0 
7f1c30a00000-7f1c30a1f000 r--p 00000000 fd:01 1840000                    /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c30a1f000-7f1c30a7b000 r-xp 0001f000 fd:01 1840000                    /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c30b00000-7f1c30b10000 r--p 00000000 00:2a 77                         /opt/app/lib/libssl.so.1.1 (deleted)
7f1c30c00000-7f1c30c10000 r--p 00000000 fd:01 1840100                    /usr/lib/x86_64-linux-gnu/libssl3.so
7f1c30d00000-7f1c30d10000 r--p 00000000 fd:01 1840200                    /opt/my dir/libssl.so
7ffd1c1e0000-7ffd1c201000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn maps_are_parsed_file_mappings_only() {
        let m = parse_maps(MAPS);
        assert_eq!(m.len(), 6, "{m:#?}");
        assert_eq!(m[1].start, 0x7f1c30a00000);
        assert_eq!(m[1].end, 0x7f1c30a1f000);
        assert_eq!(m[1].file, FileId::from_maps("fd:01", "1840000").unwrap());
        assert_eq!(m[1].path, "/usr/lib/x86_64-linux-gnu/libssl.so.3");
        assert_eq!(m[3].path, "/opt/app/lib/libssl.so.1.1", "(deleted) removed");
        assert_eq!(m[5].path, "/opt/my dir/libssl.so", "spaces kept");
    }

    #[test]
    fn libssl_names_exclude_nss() {
        let libs: Vec<String> = parse_maps(MAPS)
            .into_iter()
            .filter(|m| is_libssl(&m.path))
            .map(|m| m.path)
            .collect();
        assert_eq!(
            libs,
            [
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "/opt/app/lib/libssl.so.1.1",
                "/opt/my dir/libssl.so"
            ]
        );
        assert!(!is_libssl("/usr/lib/libssl3.so") && !is_libssl("/x/libssl.so.3/libc.so"));
    }

    #[test]
    fn files_are_deduplicated_by_device_and_inode() {
        let m = parse_maps(MAPS);
        let d = dedupe(
            m.iter()
                .filter(|m| is_libssl(&m.path))
                .map(|m| (m.file, m.path.as_str())),
        );
        assert_eq!(
            d.len(),
            3,
            "the two mappings of one libssl are one file: {d:?}"
        );
        let same_inode_other_dev = FileId::from_maps("00:2a", "1840000").unwrap();
        assert_ne!(same_inode_other_dev, m[1].file);
    }

    /// A file seen under another id (the watch's, another mapping) is one
    /// file once aliased; counts go to the canonical id.
    #[test]
    fn aliases_resolve_to_the_attached_file() {
        let mut f = Finder::default();
        let a = FileId { dev: 1, ino: 2 };
        let b = FileId { dev: 3, ino: 2 };
        f.attached.insert(a);
        f.alias(a, a);
        f.alias(b, a);
        assert_eq!(f.known(b), Some(a));
        assert_eq!(f.known(FileId { dev: 3, ino: 3 }), None);
    }

    /// This test binary's own maps parse, and its executable is among them.
    #[test]
    fn own_maps_parse() {
        let m = parse_maps(&fs::read_to_string("/proc/self/maps").unwrap());
        let exe = FileId::of(Path::new("/proc/self/exe")).unwrap();
        assert!(m.iter().any(|m| m.file == exe), "{m:#?}");
    }
}
