//! The capture side as the server sees it: status, counters, live settings.
//!
//! The binary implements [`Control`] over the loaded probes and workers; the
//! server never touches BPF itself.

/// One capture module's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModuleStatus {
    /// The wire name (`tls`, `gnutls`, …).
    pub name: &'static str,
    /// Probes attached.
    pub probes: usize,
    pub attached: bool,
    /// The file it probes.
    pub target: String,
    /// The version found in it.
    pub version: String,
    /// API routes that configure it (e.g. `/gnutls`).
    pub routes: &'static [&'static str],
    /// Calls its probes skipped, by reason (e.g. `not_a_tls_connection`).
    pub skipped: Vec<(&'static str, u64)>,
    /// Every file it probes (one, or each OpenSSL copy `tls` found).
    pub files: Vec<FileStatus>,
    /// Its loaded BPF objects (one per distinct struct layout).
    pub objects: usize,
    /// The search for libraries processes start using (`tls` without
    /// `--pid`/`--libssl`).
    pub discovery: Option<DiscoveryStatus>,
}

/// One file a module probes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileStatus {
    /// The path it was attached through, as seen from rcapture (e.g.
    /// `/proc/PID/root/usr/lib/…/libssl.so.3` for a container's copy).
    pub path: String,
    /// The path inside the process's mount namespace, and that namespace
    /// (`mnt:[4026531841]`), when it was found through a process.
    pub process_path: Option<String>,
    pub mount_ns: Option<String>,
    pub version: String,
    /// `MAJOR:MINOR:INODE`.
    pub dev_ino: Option<String>,
    pub probes: usize,
    /// Processes mapping it at the last scan (`None`: not counted).
    pub processes: Option<u64>,
    /// When it was attached (Unix seconds).
    pub attached_at: u64,
    /// Which of the module's loaded objects runs its probes.
    pub object: usize,
}

/// Counters of the library discovery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoveryStatus {
    /// The exec/mmap watch is attached.
    pub watching: bool,
    /// Files attached after start-up.
    pub attached_later: u64,
    /// Files refused (not OpenSSL, unknown, unreadable), each once.
    pub refused: u64,
    /// Processes stopped at their first mmap of an unknown libssl.
    pub held: u64,
    /// Of those, resumed once their library was attached (or refused).
    pub resumed: u64,
    /// Resumed by the timeout instead.
    pub timeouts: u64,
    /// mmap → SIGCONT, microseconds: the last, the longest, the sum.
    pub hold_us_last: u64,
    pub hold_us_max: u64,
    pub hold_us_total: u64,
    /// Watch events lost (ring full) and SIGSTOPs that could not be sent.
    pub events_lost: u64,
    pub signals_failed: u64,
    /// Executables checked for OpenSSL linked in.
    pub executables_checked: u64,
    /// Seconds since the last /proc scan (process counts).
    pub last_scan_secs_ago: Option<u64>,
}

/// Counters of the capture side (summed over workers and CPUs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureCounters {
    /// Events produced by the workers (before any output).
    pub captured: u64,
    /// Records the kernel could not write, per CPU (cpu, lost).
    pub lost_kernel_per_cpu: Vec<(u32, u64)>,
    /// Events whose call was cut, and the bytes cut.
    pub truncated_events: u64,
    pub truncated_bytes: u64,
    /// Events dropped by the live pid/uid filter (kernel and user space).
    pub filtered: u64,
    /// Malformed records.
    pub malformed: u64,
    /// Calls with a lost record.
    pub incomplete_calls: u64,
    /// Records dropped by reassembly: the first record of their call was
    /// lost, so there was no call to join them to.
    pub orphan_records: u64,
    /// Payload bytes of those records.
    pub orphan_bytes: u64,
    /// Calls emitted early because every reassembly slot was busy.
    pub evicted_calls: u64,
    /// Events the stdout text (or key log) output did not write: it was
    /// behind (a slow terminal, a pipe nobody reads) or a write failed
    /// (with -m pcap: packets and secrets the pcapng output dropped).
    pub output_dropped: u64,
    /// The pcapng output (-m pcap).
    pub pcap: Option<crate::pcapng::PcapCounters>,
}

impl CaptureCounters {
    /// Lost in the kernel, all CPUs.
    pub fn lost_kernel(&self) -> u64 {
        self.lost_kernel_per_cpu.iter().map(|(_, n)| n).sum()
    }
}

/// Settings that can change while capturing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveSettings {
    /// Only this pid (`None` = all).
    pub pid: Option<u32>,
    /// Only this uid (`None` = all).
    pub uid: Option<u32>,
    /// Text output as hex dumps.
    pub hex: bool,
}

/// What the server may ask of the capture side.
pub trait Control: Send + Sync {
    /// The modules and their probes.
    fn modules(&self) -> Vec<ModuleStatus>;
    /// Current counters.
    fn counters(&self) -> CaptureCounters;
    /// Applies new live settings (kernel filter map, worker filter, output style).
    fn apply(&self, settings: LiveSettings) -> Result<(), String>;
}
