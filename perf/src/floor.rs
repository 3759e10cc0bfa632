//! The uprobe floor: `bpf/floor.bpf.o` on rcapture's eight attach points,
//! counting hits per program in a per-CPU array and doing nothing else.

use anyhow::Context;
use aya::maps::{MapData, PerCpuArray};
use aya::programs::{UProbe, uprobe::UProbeScope};
use aya::{Ebpf, EbpfLoader};
use std::path::Path;

static FLOOR_OBJ: &[u8] = include_bytes!("../bpf/floor.bpf.o");

/// (program, hooked function), in the order of the object's `enum floor_slot`.
const PROBES: [(&str, &str); 8] = [
    ("floor_write_entry", "SSL_write"),
    ("floor_write_return", "SSL_write"),
    ("floor_write_ex_entry", "SSL_write_ex"),
    ("floor_write_ex_return", "SSL_write_ex"),
    ("floor_read_entry", "SSL_read"),
    ("floor_read_return", "SSL_read"),
    ("floor_read_ex_entry", "SSL_read_ex"),
    ("floor_read_ex_return", "SSL_read_ex"),
];

/// Hits per program, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloorHits(pub [u64; 8]);

impl FloorHits {
    /// Entry hits of the four functions.
    pub fn entries(&self) -> u64 {
        self.0.iter().step_by(2).sum()
    }

    /// Return hits of the four functions.
    pub fn returns(&self) -> u64 {
        self.0.iter().skip(1).step_by(2).sum()
    }

    /// Hits as JSON, by program name.
    pub fn to_json(&self) -> serde_json::Value {
        PROBES
            .iter()
            .zip(self.0)
            .map(|((name, _), n)| ((*name).to_owned(), serde_json::Value::from(n)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// The attached floor programs; detached on drop.
pub struct Floor {
    _ebpf: Ebpf,
    hits: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Floor").finish_non_exhaustive()
    }
}

impl Floor {
    /// Loads the floor object and attaches it to `libssl` (every process).
    pub fn attach(libssl: &Path) -> anyhow::Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .load(FLOOR_OBJ)
            .context("loading floor.bpf.o")?;
        for (name, symbol) in PROBES {
            let prog: &mut UProbe = ebpf
                .program_mut(name)
                .with_context(|| format!("no program {name} in floor.bpf.o"))?
                .try_into()?;
            prog.load().with_context(|| format!("loading {name}"))?;
            prog.attach(symbol, libssl, UProbeScope::AllProcesses)
                .with_context(|| format!("attaching {name} to {symbol}"))?;
        }
        let hits =
            PerCpuArray::try_from(ebpf.take_map("floor_hits").context("no floor_hits map")?)?;
        Ok(Self { _ebpf: ebpf, hits })
    }

    /// Hits so far.
    pub fn hits(&self) -> anyhow::Result<FloorHits> {
        let mut out = FloorHits::default();
        for (slot, total) in out.0.iter_mut().enumerate() {
            let values = self.hits.get(&(slot as u32), 0)?;
            *total = values.iter().sum();
        }
        Ok(out)
    }
}
