//! Wasm stage metrics: calls into components, records in and out, failures by kind,
//! calls that failed as a whole, time per batch, instance recycles.

use std::sync::Arc;
use std::time::Instant;

use super::{BatchOutcome, FailureKind};
use crate::metrics::{defs, global, Counter, Distribution};

const KINDS: [FailureKind; 5] = [
    FailureKind::Rejected,
    FailureKind::Trap,
    FailureKind::Timeout,
    FailureKind::Memory,
    FailureKind::Contract,
];

fn index(kind: FailureKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

/// The handles of the stages a shard runs (named by the pipeline or route component).
#[derive(Debug, Clone)]
pub struct StageMetrics {
    records_in: Arc<Counter>,
    records_out: Arc<Counter>,
    errors: [Arc<Counter>; 5],
    time: Arc<Distribution>,
}

impl StageMetrics {
    pub fn new(component: &str) -> Self {
        let r = global();
        let dims = || vec![(&defs::COMPONENT, component.to_string())];
        Self {
            records_in: r.counter(&defs::WASM_RECORDS_IN, dims()),
            records_out: r.counter(&defs::WASM_RECORDS_OUT, dims()),
            errors: KINDS.map(|k| {
                let mut d = dims();
                d.push((&defs::ERROR_KIND, k.as_str().to_string()));
                r.counter(&defs::WASM_ERRORS, d)
            }),
            time: r.distribution(&defs::WASM_BATCH_TIME, dims()),
        }
    }

    pub fn batch(&self, records: usize, outcome: &BatchOutcome, started: Instant) {
        self.time.observe_since(started);
        self.records_in.add(records as u64);
        self.records_out.add(outcome.outputs.len() as u64);
        for f in &outcome.failures {
            self.errors[index(f.kind)].inc();
        }
    }

    pub fn errors(&self, kind: FailureKind) -> &Counter {
        &self.errors[index(kind)]
    }
}

/// The handles of one component instance.
#[derive(Debug, Clone)]
pub struct InstanceMetrics {
    calls: Arc<Counter>,
    traps: Arc<Counter>,
    recycles: Arc<Counter>,
}

impl InstanceMetrics {
    pub fn new(component: &str) -> Self {
        let r = global();
        let dims = || vec![(&defs::COMPONENT, component.to_string())];
        Self {
            calls: r.counter(&defs::WASM_CALLS, dims()),
            traps: r.counter(&defs::WASM_TRAPS, dims()),
            recycles: r.counter(&defs::WASM_RECYCLES, dims()),
        }
    }

    #[inline]
    pub fn called(&self, failed: bool) {
        self.calls.inc();
        if failed {
            self.traps.inc();
        }
    }

    #[inline]
    pub fn recycled(&self) {
        self.recycles.inc();
    }
}
