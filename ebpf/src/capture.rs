//! Loading any set of modules on one set of per-CPU ring buffers:
//! privileges, rings, maps, attachment, detachment.

use std::time::SystemTime;
use std::{fmt, io, num::NonZeroU32, path::PathBuf};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, ArrayOfMaps, Map, MapData, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, LinkOrder, ProgramError, RawTracePoint, SchedClassifier, UProbe,
        links::FdLink,
        raw_trace_point::RawTracePointLink,
        tc::{SchedClassifierLink, TcAttachOptions, TcAttachType},
        tp_btf::BtfTracePointLink,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeScope},
    },
};
use aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF;

use crate::libwatch::FileId;
use crate::maps::MapValue;
use crate::module::{Attach, AttachPoint, Global, ModuleDesc, Target};
use crate::{Counters, CpuRing, Error, Filter, sys};

const RINGS_MAP: &str = "rc_rings";
const FILTER_MAP: &str = "rc_filter";
const COUNTERS_MAP: &str = "rc_counters";
const SKIPPED_MAP: &str = "rc_skipped";
const MAX_RING_BYTES: usize = 1 << 30;
const WAKEUP_BYTES: usize = 64 * 1024;

/// Settings fixed at load time, common to every module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Bytes captured per call at most (`--max-payload`); the rest is counted, not sent.
    pub max_payload: u32,
    /// Size of each CPU's ring buffer, rounded up to a power of two pages.
    pub ring_bytes_per_cpu: usize,
    /// Only this process: the uprobes are attached to it alone and the live filter starts with it.
    pub pid: Option<u32>,
    /// Only this uid (live filter).
    pub uid: Option<u32>,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        Self {
            max_payload: 1 << 20,
            ring_bytes_per_cpu: 4 << 20,
            pid: None,
            uid: None,
        }
    }
}

/// Something that did not stop loading but that the operator should know.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadWarning {
    /// RLIMIT_MEMLOCK could not be raised (harmless on kernels ≥ 5.11, which charge memcg).
    MemlockNotRaised(io::Error),
    /// An optional attach point failed.
    OptionalProbe {
        /// The module.
        module: &'static str,
        /// The program.
        program: &'static str,
        /// Where.
        point: String,
        /// Why.
        error: String,
    },
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MemlockNotRaised(e) => write!(
                f,
                "could not raise RLIMIT_MEMLOCK ({e}); continuing (BPF memory is memcg-charged)"
            ),
            Self::OptionalProbe {
                module,
                program,
                point,
                error,
            } => write!(
                f,
                "module {module}: optional probe {program} at {point} not attached: {error}"
            ),
        }
    }
}

/// What a loaded module reports (start-up line, `/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// The wire name.
    pub name: &'static str,
    /// API routes that configure it.
    pub routes: &'static [&'static str],
    /// The file probed (the first one when it probes several).
    pub path: PathBuf,
    /// Its version.
    pub version: String,
    /// Probes it attached (over all its files).
    pub probes: usize,
    /// Still attached (false once detached).
    pub attached: bool,
    /// Notes of its target.
    pub notes: Vec<String>,
    /// Calls its programs skipped, by reason ([`ModuleDesc::skipped`]),
    /// summed over CPUs and over its loaded objects.
    pub skipped: Vec<(&'static str, u64)>,
    /// Every file it probes, in attach order.
    pub files: Vec<FileInfo>,
    /// Its loaded BPF objects (one per distinct set of globals).
    pub objects: usize,
}

/// One file a module probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The path it was attached through (as seen from rcapture).
    pub path: PathBuf,
    /// Its version.
    pub version: String,
    /// Its device and inode (`None` if it could not be stat'ed).
    pub id: Option<FileId>,
    /// Probes attached to it (uprobes, plus its object's tracepoints for
    /// the first file of an object).
    pub probes: usize,
    /// When it was attached.
    pub attached_at: SystemTime,
    /// Which loaded object of the module its probes run (0, 1, …).
    pub object: usize,
}

/// One attachment, owned apart from its program so that all of them can be
/// released at once (see [`Capture::detach`]).
enum ProbeLink {
    U(UProbeLink),
    Raw(RawTracePointLink),
    Btf(BtfTracePointLink),
    Tc(SchedClassifierLink),
}

/// One loaded BPF object: a module with one set of globals. Every file of
/// the module whose globals are the same attaches to its programs.
struct Loaded {
    desc: &'static ModuleDesc,
    globals: Vec<(&'static str, Global)>,
    notes: Vec<String>,
    /// Programs; `None` once detached.
    ebpf: Option<Ebpf>,
    links: Vec<ProbeLink>,
    /// Keeps this object's ring slots filled.
    _rings_outer: ArrayOfMaps<MapData, MapData>,
    filter: Array<MapData, MapValue<Filter>>,
    counters: PerCpuArray<MapData, MapValue<Counters>>,
    /// `rc_skipped`, for a module that names skip reasons.
    skipped: Option<PerCpuArray<MapData, u64>>,
}

impl Loaded {
    /// Each skip reason with its count over all CPUs (0 if the map cannot be read).
    fn skipped(&self) -> Vec<(&'static str, u64)> {
        let Some(map) = &self.skipped else {
            return Vec::new();
        };
        (0u32..)
            .zip(self.desc.skipped)
            .map(|(i, name)| {
                let n = map
                    .get(&i, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (*name, n)
            })
            .collect()
    }
}

/// A file attached to a loaded object.
struct Attached {
    /// Index in `Capture::objects`.
    object: usize,
    path: PathBuf,
    version: String,
    id: Option<FileId>,
    probes: usize,
    attached_at: SystemTime,
}

/// The loaded and attached modules with their shared rings.
pub struct Capture {
    objects: Vec<Loaded>,
    files: Vec<Attached>,
    /// The rings' map ids by CPU (each object's `rc_rings` gets them; the
    /// rings handed out and the loaded objects keep them alive).
    ring_maps: Vec<(u32, u32)>,
    possible_cpus: u32,
    wakeup_bytes: u32,
    max_payload: u32,
    pid: Option<u32>,
    /// The live filter as last written (`stopped` included).
    filter_value: Filter,
    rings: Vec<CpuRing>,
    ring_count: usize,
    warnings: Vec<LoadWarning>,
    detached: bool,
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("modules", &self.modules())
            .field("rings", &self.ring_count)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Checks privileges and BPF, creates one ring buffer per online CPU,
    /// then attaches each target: a target of a module already loaded with
    /// the same globals only adds its uprobes to that object's programs;
    /// otherwise the module's object is loaded (once more), given the same
    /// rings, the live filter and its globals, and every program attached.
    /// Two targets of one module naming the same file are refused.
    pub fn load(targets: &[Target], opts: &CaptureOptions) -> Result<Self, Error> {
        for (i, t) in targets.iter().enumerate() {
            if let Some(o) = targets[..i].iter().find(|o| o.module == t.module) {
                let same_file = o.path == t.path
                    || matches!((FileId::of(&o.path), FileId::of(&t.path)), (Ok(a), Ok(b)) if a == b);
                if same_file || !has_uprobes(t) {
                    return Err(Error::DuplicateModule {
                        module: t.module.name,
                    });
                }
            }
        }
        if !sys::may_use_bpf() {
            return Err(Error::NotPrivileged);
        }
        let mut warnings = Vec::new();
        if let Err(e) = sys::raise_memlock() {
            warnings.push(LoadWarning::MemlockNotRaised(e));
        }
        Array::<MapData, u32>::create(1, 0).map_err(Error::BpfUnavailable)?;

        let cpu_err = |(path, source): (&'static str, io::Error)| Error::Cpus { path, source };
        let possible = aya::util::nr_cpus().map_err(cpu_err)?;
        let online = aya::util::online_cpus().map_err(cpu_err)?;
        let possible = u32::try_from(possible).unwrap_or(u32::MAX);
        let ring_bytes = ring_size(opts.ring_bytes_per_cpu);
        let wakeup_bytes = u32::try_from(WAKEUP_BYTES.min(ring_bytes / 4)).unwrap_or(u32::MAX);

        // The rings exist once; every object's outer map points at them.
        let mut ring_maps = Vec::with_capacity(online.len());
        let mut rings = Vec::with_capacity(online.len());
        for &cpu in &online {
            let data = create_ring_map(cpu, ring_bytes)?;
            let map_err = |source| Error::Map {
                name: format!("rc_ring_{cpu}"),
                source,
            };
            // By id: a later object opens it again for as long as it needs
            // (the ring itself holds one descriptor per ring).
            let id = data.info().map_err(map_err)?.id();
            let ring = Map::from_map_data(data)
                .and_then(RingBuf::try_from)
                .map_err(map_err)?;
            rings.push(CpuRing::new(cpu, ring));
            ring_maps.push((cpu, id));
        }
        let initial = Filter {
            pid: opts.pid.unwrap_or(0),
            uid: opts.uid.unwrap_or(0),
            ..Filter::default()
        };
        let mut me = Self {
            objects: Vec::with_capacity(targets.len()),
            files: Vec::with_capacity(targets.len()),
            ring_maps,
            possible_cpus: possible,
            wakeup_bytes,
            max_payload: opts.max_payload,
            pid: opts.pid,
            filter_value: initial,
            ring_count: rings.len(),
            rings,
            warnings,
            detached: false,
        };
        for t in targets {
            let mut w = Vec::new();
            let r = me.attach_target(t, &mut w);
            me.warnings.append(&mut w);
            r?;
        }
        Ok(me)
    }

    /// Attaches one more target while capturing: to the loaded object of its
    /// module with the same globals (its uprobes only), else to a new
    /// instance of the module's object on the same rings, with the current
    /// live filter (stopped included). Refused once detached, and for a file
    /// already probed by the module. Returns the file as attached and the
    /// optional probes that failed.
    pub fn add_target(&mut self, t: &Target) -> Result<(FileInfo, Vec<LoadWarning>), Error> {
        if self.detached {
            return Err(Error::Detached {
                module: t.module.name,
            });
        }
        let id = FileId::of(&t.path).ok();
        if let Some(f) = self.files.iter().find(|f| {
            self.objects[f.object].desc == t.module
                && (f.path == t.path || (id.is_some() && f.id == id))
        }) {
            return Err(Error::DuplicateTarget {
                module: t.module.name,
                path: t.path.clone(),
                attached: f.path.clone(),
            });
        }
        let mut warnings = Vec::new();
        self.attach_target(t, &mut warnings)?;
        let info = self.file_info(self.files.len() - 1);
        Ok((info, warnings))
    }

    fn attach_target(&mut self, t: &Target, warnings: &mut Vec<LoadWarning>) -> Result<(), Error> {
        let module = t.module.name;
        let shared = self
            .objects
            .iter()
            .position(|o| o.desc == t.module && o.globals == t.globals && o.ebpf.is_some());
        let (object, links) = match shared {
            Some(i) => {
                let o = &mut self.objects[i];
                let ebpf = o.ebpf.as_mut().ok_or(Error::Detached { module })?;
                // The object's tracepoints are attached already.
                let uprobes: Vec<Attach> = t
                    .attach
                    .iter()
                    .filter(|a| matches!(a.point, AttachPoint::Uprobe { .. }))
                    .cloned()
                    .collect();
                let links = attach_all(ebpf, module, &uprobes, self.pid, warnings)?;
                (i, links)
            }
            None => {
                let mut o = self.load_object(t)?;
                let ebpf = o.ebpf.as_mut().ok_or(Error::Detached { module })?;
                let links = attach_all(ebpf, module, &t.attach, self.pid, warnings)?;
                self.objects.push(o);
                (self.objects.len() - 1, links)
            }
        };
        let probes = links.len();
        self.objects[object].links.extend(links);
        self.files.push(Attached {
            object,
            path: t.path.clone(),
            version: t.version.clone(),
            id: FileId::of(&t.path).ok(),
            probes,
            attached_at: SystemTime::now(),
        });
        Ok(())
    }

    /// Loads the target's module object with its globals, gives it the
    /// rings and the current live filter; nothing attached yet.
    fn load_object(&self, t: &Target) -> Result<Loaded, Error> {
        let module = t.module.name;
        let mut loader = EbpfLoader::new();
        loader
            .override_global("max_payload", &self.max_payload, true)
            .override_global("wakeup_bytes", &self.wakeup_bytes, true)
            .map_max_entries(RINGS_MAP, self.possible_cpus);
        for (name, value) in &t.globals {
            match value {
                Global::U32(v) => loader.override_global(name, v, true),
                Global::U64(v) => loader.override_global(name, v, true),
                Global::Bytes(v) => loader.override_global(name, v.as_slice(), true),
            };
        }
        let mut ebpf = loader
            .load(t.module.object)
            .map_err(|source| Error::Load { module, source })?;
        let mut rings_outer: ArrayOfMaps<MapData, MapData> =
            take_map(&mut ebpf, module, RINGS_MAP)?;
        for (cpu, id) in &self.ring_maps {
            let data = MapData::from_id(*id).map_err(|source| Error::Map {
                name: format!("rc_ring_{cpu}"),
                source,
            })?;
            rings_outer
                .set(*cpu, &data, 0)
                .map_err(|source| Error::Map {
                    name: format!("{module}: rc_rings[{cpu}]"),
                    source,
                })?;
        }
        let mut filter: Array<MapData, MapValue<Filter>> = take_map(&mut ebpf, module, FILTER_MAP)?;
        filter
            .set(0, MapValue(self.filter_value), 0)
            .map_err(map_err(FILTER_MAP))?;
        let counters = take_map(&mut ebpf, module, COUNTERS_MAP)?;
        let skipped = if t.module.skipped.is_empty() {
            None
        } else {
            Some(take_map(&mut ebpf, module, SKIPPED_MAP)?)
        };
        Ok(Loaded {
            desc: t.module,
            globals: t.globals.clone(),
            notes: t.notes.clone(),
            ebpf: Some(ebpf),
            links: Vec::new(),
            _rings_outer: rings_outer,
            filter,
            counters,
            skipped,
        })
    }

    fn file_info(&self, i: usize) -> FileInfo {
        let f = &self.files[i];
        let o = &self.objects[f.object];
        FileInfo {
            path: f.path.clone(),
            version: f.version.clone(),
            id: f.id,
            probes: if o.ebpf.is_some() { f.probes } else { 0 },
            attached_at: f.attached_at,
            object: self.objects[..f.object]
                .iter()
                .filter(|p| p.desc == o.desc)
                .count(),
        }
    }

    /// Hands out the per-CPU rings (once; later calls return an empty Vec).
    pub fn take_rings(&mut self) -> Vec<CpuRing> {
        std::mem::take(&mut self.rings)
    }

    /// The number of ring buffers (one per online CPU, whatever the modules).
    pub fn ring_count(&self) -> usize {
        self.ring_count
    }

    /// The loaded modules, in load order, each with all its files.
    pub fn modules(&self) -> Vec<ModuleInfo> {
        let mut out: Vec<ModuleInfo> = Vec::new();
        for (i, f) in self.files.iter().enumerate() {
            let o = &self.objects[f.object];
            let info = self.file_info(i);
            match out.iter_mut().find(|m| m.name == o.desc.name) {
                Some(m) => {
                    m.probes += info.probes;
                    m.files.push(info);
                }
                None => out.push(ModuleInfo {
                    name: o.desc.name,
                    routes: o.desc.routes,
                    path: f.path.clone(),
                    version: f.version.clone(),
                    probes: info.probes,
                    attached: true,
                    notes: o.notes.clone(),
                    skipped: Vec::new(),
                    files: vec![info],
                    objects: 0,
                }),
            }
        }
        for m in &mut out {
            for o in self.objects.iter().filter(|o| o.desc.name == m.name) {
                m.objects += 1;
                m.attached &= o.ebpf.is_some();
                for (k, n) in o.skipped() {
                    match m.skipped.iter_mut().find(|(kk, _)| *kk == k) {
                        Some((_, t)) => *t += n,
                        None => m.skipped.push((k, n)),
                    }
                }
                for n in &o.notes {
                    if !m.notes.contains(n) {
                        m.notes.push(n.clone());
                    }
                }
            }
        }
        out
    }

    /// Changes the live filter of every module: only this pid / uid (0 = any).
    pub fn set_filter(&mut self, pid: u32, uid: u32) -> Result<(), Error> {
        self.write_filter(Filter {
            pid,
            uid,
            ..self.filter_value
        })
    }

    /// Stops capturing: from now on no probe starts recording a call (the
    /// calls already entered still complete). Takes effect at once, unlike
    /// [`Self::detach`]; the rings are then drained to their end. A target
    /// added later starts stopped too.
    pub fn stop_capture(&mut self) -> Result<(), Error> {
        self.write_filter(Filter {
            stopped: 1,
            ..self.filter_value
        })
    }

    fn write_filter(&mut self, f: Filter) -> Result<(), Error> {
        // Recorded first: an object loaded later starts with it even if a
        // write below fails.
        self.filter_value = f;
        for m in &mut self.objects {
            m.filter
                .set(0, MapValue(f), 0)
                .map_err(map_err(FILTER_MAP))?;
        }
        Ok(())
    }

    /// The kernel-side counters of every module summed, one entry per
    /// possible CPU (index = CPU id).
    pub fn counters(&self) -> Result<Vec<Counters>, Error> {
        let mut total: Vec<Counters> = Vec::new();
        for m in &self.objects {
            let values = m.counters.get(&0, 0).map_err(map_err(COUNTERS_MAP))?;
            for (cpu, v) in values.iter().enumerate() {
                if total.len() <= cpu {
                    total.resize(cpu + 1, Counters::default());
                }
                let t = &mut total[cpu];
                t.emitted += v.0.emitted;
                t.lost += v.0.lost;
                t.lost_bytes += v.0.lost_bytes;
                t.filtered += v.0.filtered;
            }
        }
        Ok(total)
    }

    /// Attached probe links of all modules; 0 once detached.
    pub fn probe_count(&self) -> usize {
        self.objects
            .iter()
            .filter(|m| m.ebpf.is_some())
            .map(|m| m.links.len())
            .sum()
    }

    /// Non-fatal problems met while loading.
    pub fn warnings(&self) -> &[LoadWarning] {
        &self.warnings
    }

    /// Detaches and unloads every program of every module, all probes at
    /// once and without waiting for the kernel's unregistration (see
    /// `detach.rs`); call [`Self::stop_capture`] first for a clean cut. The
    /// rings (taken or not) stay readable so the caller can drain what was
    /// already written. Targets can no longer be added.
    pub fn detach(&mut self) {
        self.detached = true;
        let mut fd_links = Vec::new();
        for m in &mut self.objects {
            for link in std::mem::take(&mut m.links) {
                // A perf link that is not a bpf link (kernels before 5.15) is
                // closed by the failed conversion, in turn.
                let fd = match link {
                    ProbeLink::U(l) => FdLink::try_from(l),
                    ProbeLink::Raw(l) => Ok(FdLink::from(l)),
                    ProbeLink::Btf(l) => Ok(FdLink::from(l)),
                    ProbeLink::Tc(l) => FdLink::try_from(l),
                };
                if let Ok(fd) = fd {
                    fd_links.push(fd);
                }
            }
        }
        crate::detach::release(fd_links);
        for m in &mut self.objects {
            m.ebpf = None;
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Rounds to a power-of-two number of pages, as BPF ring buffers require.
fn ring_size(requested: usize) -> usize {
    requested
        .clamp(sys::page_size(), MAX_RING_BYTES)
        .next_power_of_two()
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> Error {
    move |source| Error::Map {
        name: name.into(),
        source,
    }
}

fn take_map<M>(ebpf: &mut Ebpf, module: &'static str, name: &'static str) -> Result<M, Error>
where
    M: TryFrom<Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(Error::MissingMap { module, name })?;
    M::try_from(map).map_err(map_err(name))
}

fn create_ring_map(cpu: u32, bytes: usize) -> Result<MapData, Error> {
    let name = format!("rc_ring_{cpu}");
    let size = u32::try_from(bytes).unwrap_or(u32::MAX);
    let obj = aya_obj::Map::new_from_params(BPF_MAP_TYPE_RINGBUF as u32, 0, 0, size, 0);
    MapData::create(obj, &name, None).map_err(|source| Error::Map { name, source })
}

fn program_err(
    module: &'static str,
    name: &'static str,
    attach_point: String,
) -> impl Fn(ProgramError) -> Error {
    move |source| Error::Program {
        module,
        name,
        attach_point: attach_point.clone(),
        source: Box::new(source),
    }
}

fn attach_all(
    ebpf: &mut Ebpf,
    module: &'static str,
    attach: &[Attach],
    pid: Option<u32>,
    warnings: &mut Vec<LoadWarning>,
) -> Result<Vec<ProbeLink>, Error> {
    let scope = pid
        .and_then(NonZeroU32::new)
        .map_or(UProbeScope::AllProcesses, UProbeScope::OneProcess);
    let mut links = Vec::with_capacity(attach.len());
    let mut btf = None;
    for a in attach {
        match attach_one(ebpf, module, a, scope, &mut btf) {
            Ok(link) => links.push(link),
            Err(e) if !a.required => warnings.push(LoadWarning::OptionalProbe {
                module,
                program: a.program,
                point: a.point.to_string(),
                error: error_chain(&e),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(links)
}

/// A target that probes a file (and so may be one of several of its module).
fn has_uprobes(t: &Target) -> bool {
    t.attach
        .iter()
        .any(|a| matches!(a.point, AttachPoint::Uprobe { .. }))
}

/// An error with its sources, `: `-separated (for one-line messages).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn attach_one(
    ebpf: &mut Ebpf,
    module: &'static str,
    a: &Attach,
    scope: UProbeScope,
    btf: &mut Option<Btf>,
) -> Result<ProbeLink, Error> {
    let name = a.program;
    let prog = ebpf
        .program_mut(name)
        .ok_or(Error::MissingProgram { module, name })?;
    let err = |at: &str| program_err(module, name, at.to_owned());
    match &a.point {
        AttachPoint::Uprobe {
            path,
            offset,
            cookie,
            ..
        } => {
            let probe: &mut UProbe = prog.try_into().map_err(err("load"))?;
            // Loaded once; a program attached at several points is met again.
            if probe.fd().is_err() {
                probe.load().map_err(err("load"))?;
            }
            let at = a.point.to_string();
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(*offset),
                cookie: (*cookie != 0).then_some(*cookie),
            };
            let id = probe.attach(point, path, scope).map_err(err(&at))?;
            let link = probe.take_link(id).map_err(err(&at))?;
            Ok(ProbeLink::U(link))
        }
        AttachPoint::RawTracepoint(tp) => {
            let raw_tp: &mut RawTracePoint = prog.try_into().map_err(err("load"))?;
            if raw_tp.fd().is_err() {
                raw_tp.load().map_err(err("load"))?;
            }
            let id = raw_tp.attach(tp).map_err(err(tp))?;
            let link = raw_tp.take_link(id).map_err(err(tp))?;
            Ok(ProbeLink::Raw(link))
        }
        AttachPoint::TpBtf(tp) => {
            let at = a.point.to_string();
            let prog: &mut BtfTracePoint = prog.try_into().map_err(err("load"))?;
            // The tracepoint is fixed at load: one attach point per program.
            if prog.fd().is_err() {
                let btf = match btf {
                    Some(b) => b,
                    None => btf
                        .insert(Btf::from_sys_fs().map_err(|e| err("load")(ProgramError::Btf(e)))?),
                };
                prog.load(tp, btf).map_err(err("load"))?;
            }
            let id = prog.attach().map_err(err(&at))?;
            let link = prog.take_link(id).map_err(err(&at))?;
            Ok(ProbeLink::Btf(link))
        }
        AttachPoint::Tcx { interface, ingress } => {
            let at = a.point.to_string();
            let prog: &mut SchedClassifier = prog.try_into().map_err(err("load"))?;
            if prog.fd().is_err() {
                prog.load().map_err(err("load"))?;
            }
            let kind = if *ingress {
                TcAttachType::Ingress
            } else {
                TcAttachType::Egress
            };
            let order = TcAttachOptions::TcxOrder(LinkOrder::default());
            let id = prog
                .attach_with_options(interface, kind, order)
                .map_err(err(&at))?;
            let link = prog.take_link(id).map_err(err(&at))?;
            Ok(ProbeLink::Tc(link))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str, uprobe: bool) -> Target {
        let point = if uprobe {
            AttachPoint::Uprobe {
                path: PathBuf::from(path),
                symbol: "f".into(),
                offset: 0x1000,
                ret: false,
                cookie: 0,
            }
        } else {
            AttachPoint::RawTracepoint("sys_enter")
        };
        Target {
            module: &crate::target::openssl::MODULE,
            path: PathBuf::from(path),
            version: "3.0.0".into(),
            attach: vec![Attach {
                program: "rc_ssl_write_entry",
                point,
                required: true,
            }],
            globals: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// One file twice, under two names of the same inode, is refused before
    /// anything is loaded; so is a module without a file twice.
    #[test]
    fn a_file_is_probed_once_per_module() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_str().unwrap();
        for pair in [
            [target(exe, true), target(exe, true)],
            [target(exe, true), target("/proc/self/exe", true)],
            [target("/a", false), target("/b", false)],
        ] {
            let e = Capture::load(&pair, &CaptureOptions::default()).unwrap_err();
            assert!(matches!(e, Error::DuplicateModule { module: "tls" }), "{e}");
        }
    }
}
