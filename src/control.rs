//! The capture side behind the event server's API: the loaded probes, the
//! workers' counters, and the live settings (`rcapture_net::control::Control`).

use crossbeam_utils::CachePadded;
use rcapture_core::output::OutputStats;
use rcapture_core::worker::{LiveFilter, WorkerStats};
use rcapture_ebpf::Capture;
use rcapture_net::control::{CaptureCounters, Control, FileStatus, LiveSettings, ModuleStatus};
use rcapture_net::pcapng::PcapStats;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Probes, workers and output flags of a capture.
pub struct CaptureControl {
    pub probes: Arc<Mutex<Capture>>,
    pub filter: Arc<LiveFilter>,
    pub hex: Arc<AtomicBool>,
    /// The stdout text or key log output's counters.
    pub output: Arc<OutputStats>,
    /// The pcapng output's counters (-m pcap).
    pub pcap: Option<Arc<PcapStats>>,
    /// The tls module's library discovery, when it runs.
    pub discovery: Option<Arc<crate::discover::Shared>>,
    /// Set once the workers exist.
    pub workers: Mutex<Vec<Arc<CachePadded<WorkerStats>>>>,
}

impl CaptureControl {
    /// Gives the control the workers' counters.
    pub fn set_workers(&self, w: Vec<Arc<CachePadded<WorkerStats>>>) {
        *self.workers.lock().unwrap_or_else(|e| e.into_inner()) = w;
    }

    fn with_probes<R>(&self, f: impl FnOnce(&mut Capture) -> R) -> R {
        let mut g = match self.probes.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }
}

impl Control for CaptureControl {
    fn modules(&self) -> Vec<ModuleStatus> {
        self.with_probes(|p| p.modules())
            .into_iter()
            .map(|m| {
                let disc = self.discovery.as_ref().filter(|_| m.name == "tls");
                let origins =
                    disc.map(|d| d.origins.lock().unwrap_or_else(|e| e.into_inner()).clone());
                let files = m
                    .files
                    .iter()
                    .map(|f| {
                        let origin = f.id.and_then(|id| origins.as_ref()?.get(&id).cloned());
                        FileStatus {
                            path: f.path.display().to_string(),
                            process_path: origin.as_ref().and_then(|o| o.process_path.clone()),
                            mount_ns: origin.and_then(|o| o.mount_ns),
                            version: f.version.clone(),
                            dev_ino: f.id.map(|id| id.display()),
                            probes: f.probes,
                            processes: disc.zip(f.id).and_then(|(d, id)| d.processes(id)),
                            attached_at: crate::discover::unix_secs(f.attached_at),
                            object: f.object,
                        }
                    })
                    .collect();
                ModuleStatus {
                    name: m.name,
                    probes: m.probes,
                    attached: m.attached,
                    target: m.path.display().to_string(),
                    version: m.version,
                    routes: m.routes,
                    skipped: m.skipped,
                    files,
                    objects: m.objects,
                    discovery: disc.map(|d| d.status()),
                }
            })
            .collect()
    }

    fn counters(&self) -> CaptureCounters {
        let workers = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let sum = |f: fn(&WorkerStats) -> u64| workers.iter().map(|w| f(w)).sum::<u64>();
        let kernel = self.with_probes(|p| p.counters()).unwrap_or_default();
        let pcap = self.pcap.as_ref().map(|p| p.snapshot());
        CaptureCounters {
            captured: sum(|w| w.events.load(Relaxed)),
            lost_kernel_per_cpu: kernel
                .iter()
                .enumerate()
                .map(|(cpu, c)| (cpu as u32, c.lost))
                .collect(),
            truncated_events: sum(|w| w.truncated_events.load(Relaxed)),
            truncated_bytes: sum(|w| w.truncated_bytes.load(Relaxed)),
            filtered: sum(|w| w.filtered.load(Relaxed))
                + kernel.iter().map(|c| c.filtered).sum::<u64>(),
            malformed: sum(|w| w.decode_errors.load(Relaxed)),
            incomplete_calls: sum(|w| w.incomplete_calls.load(Relaxed)),
            orphan_records: sum(|w| w.orphan_records.load(Relaxed)),
            orphan_bytes: sum(|w| w.orphan_bytes.load(Relaxed)),
            evicted_calls: sum(|w| w.evicted_calls.load(Relaxed)),
            output_dropped: self.output.dropped.load(Relaxed)
                + pcap
                    .as_ref()
                    .map_or(0, |p| p.packets_dropped + p.secrets_dropped),
            pcap,
        }
    }

    fn apply(&self, s: LiveSettings) -> Result<(), String> {
        // The kernel map filters pid and (non-root) uid early; the workers
        // apply both exactly (uid 0 cannot be told from "any" in the map).
        self.with_probes(|p| p.set_filter(s.pid.unwrap_or(0), s.uid.unwrap_or(0)))
            .map_err(|e| e.to_string())?;
        self.filter.set(s.pid, s.uid);
        self.hex.store(s.hex, Relaxed);
        Ok(())
    }
}
