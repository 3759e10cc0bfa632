//! Fuzzes both stages of `POST /config` (capture settings and event_forward):
//! never panics; an accepted update re-posts to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcapture_net::config::{CaptureConfig, StartSettings};
use rcapture_net::control::LiveSettings;
use rcapture_net::forward::config::ForwardConfig;

fuzz_target!(|data: &[u8]| {
    let cfg = CaptureConfig {
        live: LiveSettings::default(),
        start: StartSettings { per_cpu_map_size: 8192, truncate_size: 1 << 20 },
    };
    if let Ok(next) = cfg.patched(data) {
        let again = next.patched(&serde_json::to_vec(&next.to_json()).unwrap()).unwrap();
        assert_eq!(again, next);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(Some(f)) = ForwardConfig::patched(None, &v) {
            let again = ForwardConfig::patched(Some(&f), &ForwardConfig::to_json(Some(&f))).unwrap();
            assert_eq!(again, Some(f));
        }
    }
});
