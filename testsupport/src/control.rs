//! A [`Control`] for a server with no probes behind it: no modules, zero
//! counters, every live setting accepted.

use rcapture_net::control::{CaptureCounters, Control, LiveSettings, ModuleStatus};

/// No probes: `/status` shows no modules, every counter 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoControl;

impl Control for NoControl {
    fn modules(&self) -> Vec<ModuleStatus> {
        Vec::new()
    }
    fn counters(&self) -> CaptureCounters {
        CaptureCounters::default()
    }
    fn apply(&self, _: LiveSettings) -> Result<(), String> {
        Ok(())
    }
}
