//! Loading the OpenSSL probes: privileges, rings, maps, attachment, detachment.

use std::{fmt, io, num::NonZeroU32};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, ArrayOfMaps, Map, MapData, PerCpuArray, RingBuf},
    programs::{
        RawTracePoint, UProbe,
        links::FdLink,
        raw_trace_point::RawTracePointLink,
        uprobe::{UProbeLink, UProbeScope},
    },
};
use aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF;

use crate::maps::MapValue;
use crate::{Counters, CpuRing, Error, Filter, OpensslTarget, sys, target::REQUIRED_SYMBOLS};

/// The embedded object built by `make -C ebpf` from `src/openssl.bpf.c`.
static OPENSSL_OBJ: &[u8] = include_bytes!("../obj/openssl.bpf.o");

/// (program, hooked function) pairs: entry and return of the four I/O calls.
const IO_PROBES: [(&str, &str); 8] = [
    ("rc_ssl_write_entry", REQUIRED_SYMBOLS[0]),
    ("rc_ssl_write_return", REQUIRED_SYMBOLS[0]),
    ("rc_ssl_write_ex_entry", REQUIRED_SYMBOLS[1]),
    ("rc_ssl_write_ex_return", REQUIRED_SYMBOLS[1]),
    ("rc_ssl_read_entry", REQUIRED_SYMBOLS[2]),
    ("rc_ssl_read_return", REQUIRED_SYMBOLS[2]),
    ("rc_ssl_read_ex_entry", REQUIRED_SYMBOLS[3]),
    ("rc_ssl_read_ex_return", REQUIRED_SYMBOLS[3]),
];
const SET_FD_PROGRAM: &str = "rc_ssl_set_fd";
/// Raw tracepoint program on `sys_enter`: learns the fd of custom-BIO TLS calls.
const SYSCALL_PROGRAM: &str = "rc_sys_enter";

const RINGS_MAP: &str = "rc_rings";
const FILTER_MAP: &str = "rc_filter";
const COUNTERS_MAP: &str = "rc_counters";
const MAX_RING_BYTES: usize = 1 << 30;
const WAKEUP_BYTES: usize = 64 * 1024;

/// Settings fixed at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsProbeOptions {
    /// Bytes captured per TLS call at most (`--max-payload`); the rest is counted, not sent.
    pub max_payload: u32,
    /// Size of each CPU's ring buffer, rounded up to a power of two pages.
    pub ring_bytes_per_cpu: usize,
    /// Only this process: the uprobes are attached to it alone and the live filter starts with it.
    pub pid: Option<u32>,
    /// Only this uid (live filter).
    pub uid: Option<u32>,
}

impl Default for TlsProbeOptions {
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
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MemlockNotRaised(e) => write!(
                f,
                "could not raise RLIMIT_MEMLOCK ({e}); continuing (BPF memory is memcg-charged)"
            ),
        }
    }
}

/// One attachment, owned apart from its program so that all of them can be
/// released at once (see [`TlsProbes::detach`]).
enum ProbeLink {
    U(UProbeLink),
    Raw(RawTracePointLink),
}

/// The loaded and attached OpenSSL probes with their rings and maps.
pub struct TlsProbes {
    /// Programs; `None` once detached.
    ebpf: Option<Ebpf>,
    /// Every attachment of the programs (empty once detached).
    links: Vec<ProbeLink>,
    /// The live filter as last written (`stopped` included).
    filter_value: Filter,
    /// Keeps the ring slots alive while the rings are handed out.
    _rings_outer: ArrayOfMaps<MapData, MapData>,
    rings: Vec<CpuRing>,
    filter: Array<MapData, MapValue<Filter>>,
    counters: PerCpuArray<MapData, MapValue<Counters>>,
    probe_count: usize,
    warnings: Vec<LoadWarning>,
}

impl fmt::Debug for TlsProbes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsProbes")
            .field("attached", &self.ebpf.is_some())
            .field("rings", &self.rings.len())
            .field("probe_count", &self.probe_count)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl TlsProbes {
    /// Checks privileges and BPF, loads the embedded object, creates
    /// one ring buffer per online CPU and attaches every probe to `target`.
    pub fn load(target: &OpensslTarget, opts: &TlsProbeOptions) -> Result<Self, Error> {
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

        let mut ebpf = EbpfLoader::new()
            .override_global("max_payload", &opts.max_payload, true)
            .override_global("wakeup_bytes", &wakeup_bytes, true)
            .map_max_entries(RINGS_MAP, possible)
            .load(OPENSSL_OBJ)
            .map_err(Error::Load)?;

        let mut rings_outer: ArrayOfMaps<MapData, MapData> = take_map(&mut ebpf, RINGS_MAP)?;
        let mut rings = Vec::with_capacity(online.len());
        for cpu in online {
            rings.push(create_ring(&mut rings_outer, cpu, ring_bytes)?);
        }
        let mut filter: Array<MapData, MapValue<Filter>> = take_map(&mut ebpf, FILTER_MAP)?;
        let counters: PerCpuArray<MapData, MapValue<Counters>> = take_map(&mut ebpf, COUNTERS_MAP)?;
        let initial = Filter {
            pid: opts.pid.unwrap_or(0),
            uid: opts.uid.unwrap_or(0),
            ..Filter::default()
        };
        filter
            .set(0, MapValue(initial), 0)
            .map_err(map_err(FILTER_MAP))?;

        let links = attach_all(&mut ebpf, target, opts.pid)?;
        let probe_count = links.len();
        Ok(Self {
            ebpf: Some(ebpf),
            links,
            filter_value: initial,
            _rings_outer: rings_outer,
            rings,
            filter,
            counters,
            probe_count,
            warnings,
        })
    }

    /// Hands out the per-CPU rings (once; later calls return an empty Vec).
    pub fn take_rings(&mut self) -> Vec<CpuRing> {
        std::mem::take(&mut self.rings)
    }

    /// Changes the live filter: only this pid / uid (0 = any).
    pub fn set_filter(&mut self, pid: u32, uid: u32) -> Result<(), Error> {
        self.write_filter(Filter {
            pid,
            uid,
            ..self.filter_value
        })
    }

    /// Stops capturing: from now on no probe starts recording a call (the
    /// calls already entered still complete). Takes effect at once, unlike
    /// [`Self::detach`]; the rings are then drained to their end.
    pub fn stop_capture(&mut self) -> Result<(), Error> {
        self.write_filter(Filter {
            stopped: 1,
            ..self.filter_value
        })
    }

    fn write_filter(&mut self, f: Filter) -> Result<(), Error> {
        self.filter
            .set(0, MapValue(f), 0)
            .map_err(map_err(FILTER_MAP))?;
        self.filter_value = f;
        Ok(())
    }

    /// The kernel-side counters, one entry per possible CPU (index = CPU id).
    pub fn counters(&self) -> Result<Vec<Counters>, Error> {
        let values = self.counters.get(&0, 0).map_err(map_err(COUNTERS_MAP))?;
        Ok(values.iter().map(|v| v.0).collect())
    }

    /// Attached probe links (uprobes, uretprobes, the raw tracepoint); 0 once detached.
    pub fn probe_count(&self) -> usize {
        if self.ebpf.is_some() {
            self.probe_count
        } else {
            0
        }
    }

    /// Non-fatal problems met while loading.
    pub fn warnings(&self) -> &[LoadWarning] {
        &self.warnings
    }

    /// Detaches and unloads every program, all probes at once and without
    /// waiting for the kernel's unregistration (see `detach.rs`); call
    /// [`Self::stop_capture`] first for a clean cut. The rings (taken or
    /// not) stay readable so the caller can drain what was already written.
    pub fn detach(&mut self) {
        let mut fd_links = Vec::with_capacity(self.links.len());
        for link in std::mem::take(&mut self.links) {
            // A perf link that is not a bpf link (kernels before 5.15) is
            // closed by the failed conversion, in turn.
            let fd = match link {
                ProbeLink::U(l) => FdLink::try_from(l),
                ProbeLink::Raw(l) => Ok(FdLink::from(l)),
            };
            if let Ok(fd) = fd {
                fd_links.push(fd);
            }
        }
        crate::detach::release(fd_links);
        self.ebpf = None;
    }
}

impl Drop for TlsProbes {
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

fn take_map<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, Error>
where
    M: TryFrom<Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(Error::MissingMap { name })?;
    M::try_from(map).map_err(map_err(name))
}

fn create_ring(
    outer: &mut ArrayOfMaps<MapData, MapData>,
    cpu: u32,
    bytes: usize,
) -> Result<CpuRing, Error> {
    let name = format!("rc_ring_{cpu}");
    let err = |source| Error::Map {
        name: name.clone(),
        source,
    };
    let size = u32::try_from(bytes).unwrap_or(u32::MAX);
    let obj = aya_obj::Map::new_from_params(BPF_MAP_TYPE_RINGBUF as u32, 0, 0, size, 0);
    let data = MapData::create(obj, &name, None).map_err(err)?;
    outer.set(cpu, &data, 0).map_err(err)?;
    let ring = Map::from_map_data(data)
        .and_then(RingBuf::try_from)
        .map_err(err)?;
    Ok(CpuRing::new(cpu, ring))
}

fn program_err(
    name: &'static str,
    attach_point: &str,
) -> impl Fn(aya::programs::ProgramError) -> Error {
    let attach_point = attach_point.to_owned();
    move |source| Error::Program {
        name,
        attach_point: attach_point.clone(),
        source,
    }
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut UProbe, Error> {
    let prog = ebpf
        .program_mut(name)
        .ok_or(Error::MissingProgram { name })?;
    let probe: &mut UProbe = prog.try_into().map_err(program_err(name, "load"))?;
    // Loaded once; a program attached to several functions is met again.
    if probe.fd().is_err() {
        probe.load().map_err(program_err(name, "load"))?;
    }
    Ok(probe)
}

fn attach_all(
    ebpf: &mut Ebpf,
    target: &OpensslTarget,
    pid: Option<u32>,
) -> Result<Vec<ProbeLink>, Error> {
    let scope = pid
        .and_then(NonZeroU32::new)
        .map_or(UProbeScope::AllProcesses, UProbeScope::OneProcess);
    let lib = target.libssl();
    let mut links = Vec::new();
    let mut attach = |ebpf: &mut Ebpf, name: &'static str, symbol: &str| -> Result<(), Error> {
        let probe = uprobe(ebpf, name)?;
        let id = probe
            .attach(symbol, lib, scope)
            .map_err(program_err(name, symbol))?;
        let link = probe.take_link(id).map_err(program_err(name, symbol))?;
        links.push(ProbeLink::U(link));
        Ok(())
    };
    for (name, symbol) in IO_PROBES {
        attach(ebpf, name, symbol)?;
    }
    for &symbol in target.optional_symbols() {
        attach(ebpf, SET_FD_PROGRAM, symbol)?;
    }
    let name = SYSCALL_PROGRAM;
    let prog = ebpf
        .program_mut(name)
        .ok_or(Error::MissingProgram { name })?;
    let raw_tp: &mut RawTracePoint = prog.try_into().map_err(program_err(name, "load"))?;
    raw_tp.load().map_err(program_err(name, "load"))?;
    let id = raw_tp
        .attach("sys_enter")
        .map_err(program_err(name, "sys_enter"))?;
    let link = raw_tp
        .take_link(id)
        .map_err(program_err(name, "sys_enter"))?;
    links.push(ProbeLink::Raw(link));
    Ok(links)
}
