//! Grants: the WASI capabilities a component is given, each explicit in the config
//! (`stages.<stage>.grants`). Nothing else reaches the guest.
//!
//! A component that imports no WASI interface gets no WASI at all (none is linked). One
//! that does gets a context built from its grants, where what is not granted is absent or
//! inert:
//!
//! | capability | not granted (default) | granted |
//! |---|---|---|
//! | environment | no variables | `env`: exactly these variables |
//! | files | no directory | `read_only_dirs`: each, read-only, at its absolute host path |
//! | clocks | both clocks read 0 (wall clock at the Unix epoch) | the host's clocks |
//! | random | a fixed, repeating byte sequence | the host's random sources |
//! | network | refused | never granted |
//!
//! stdout and stderr always go to the host log, tagged with the component's name; stdin
//! is empty.

use std::path::PathBuf;
use std::time::Duration;

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// What one component may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Environment variables the guest sees.
    pub env: Vec<(String, String)>,
    /// Directories the guest may read (absolute host paths, seen at the same path).
    pub read_only_dirs: Vec<PathBuf>,
    /// The host's wall and monotonic clocks.
    pub clocks: bool,
    /// The host's secure and insecure random sources.
    pub random: bool,
}

/// A clock that never moves: 0, the Unix epoch.
struct Stopped;

impl HostWallClock for Stopped {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for Stopped {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The bytes an ungranted random source repeats.
fn fixed_bytes() -> Vec<u8> {
    (0..=255u8)
        .map(|b| b.wrapping_mul(167).wrapping_add(13))
        .collect()
}

impl Grants {
    /// The WASI context of one instance: these grants, output captured into `output`.
    pub(crate) fn wasi_ctx(&self, output: &MemoryOutputPipe) -> Result<WasiCtx, String> {
        let mut b = WasiCtxBuilder::new();
        b.stdout(output.clone())
            .stderr(output.clone())
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .envs(&self.env);
        for dir in &self.read_only_dirs {
            let guest = dir.to_string_lossy();
            b.preopened_dir(dir, &*guest, FsPerms::ReadOnly)
                .map_err(|e| format!("cannot open granted directory {}: {e:#}", dir.display()))?;
        }
        if !self.clocks {
            b.wall_clock(Stopped).monotonic_clock(Stopped);
        }
        if !self.random {
            b.secure_random(wasmtime_wasi::Deterministic::new(fixed_bytes()))
                .insecure_random(wasmtime_wasi::Deterministic::new(fixed_bytes()))
                .insecure_random_seed(0);
        }
        Ok(b.build())
    }
}
