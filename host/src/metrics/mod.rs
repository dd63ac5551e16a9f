//! Metrics: what an operator watches. Each metric is defined once ([`defs`]) with its
//! CloudWatch name (the KCL's and KPL's names, so dashboards and alarms written for the
//! JVM connectors keep working), its Prometheus name, unit, kind and level; every
//! configured exporter ([`cloudwatch`], [`prometheus`]) reads the same series.
//!
//! **Cost.** Code that counts holds pre-resolved handles ([`Counter`], [`Gauge`],
//! [`Distribution`]): an update is one or a few relaxed atomic operations, no lock and no
//! allocation. Resolving a handle (name + dimensions → series) takes the registry lock and
//! is done when a shard, a producer or a sink starts, not per record. Exporters copy the
//! values on their own task and never make the pipeline wait.
//!
//! **Levels** (as the KCL's `MetricsLevel`): `none` registers nothing; `summary` keeps the
//! metrics an operator alarms on, aggregated per stream (a shard's series are summed, or for
//! distributions merged, into the stream's); `detailed` adds per-shard dimensions and the
//! finer metrics.
//!
//! A handle resolved while its metric is not enabled is a detached one: it counts, and
//! nothing reads it.

pub mod cloudwatch;
pub mod defs;
pub mod exporters;
pub mod prometheus;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

pub use crate::config::metrics::Level;

/// The level stored as a `u8` (the registry's atomic), read back.
fn level_from_u8(v: u8) -> Level {
    match v {
        0 => Level::None,
        1 => Level::Summary,
        _ => Level::Detailed,
    }
}

/// The unit of a metric, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Bytes,
}

impl Unit {
    pub fn cloudwatch(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
            Self::Bytes => "Bytes",
        }
    }
}

/// How a metric's value behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows; exported as the sum over each period (CloudWatch) or the total
    /// (Prometheus `counter`).
    Counter,
    /// A current value (leases held, sends in flight).
    Gauge,
    /// Observations: count, sum, minimum and maximum per period (a CloudWatch statistic
    /// set), a Prometheus histogram.
    Distribution,
}

/// A dimension: its CloudWatch name and its Prometheus label.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Dim {
    pub cloudwatch: &'static str,
    pub label: &'static str,
}

/// One metric's definition.
#[derive(Debug)]
pub struct Def {
    /// CloudWatch metric name (KCL / KPL style: `RecordsProcessed`, `GetRecords.Time`).
    pub name: &'static str,
    /// Prometheus family name (`shardline_records_processed_total`).
    pub prometheus: &'static str,
    pub help: &'static str,
    pub unit: Unit,
    pub kind: Kind,
    /// The least level that records it.
    pub level: Level,
    /// Prometheus histogram bucket bounds (distributions only).
    pub buckets: &'static [u64],
}

/// A counter handle.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A gauge handle.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }
    #[inline]
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// A distribution handle: running count and sum (never reset), minimum and maximum of
/// the current period (reset by the CloudWatch exporter), and histogram buckets.
#[derive(Debug)]
pub struct Distribution {
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    last: AtomicU64,
    bounds: &'static [u64],
    /// Observations `<= bounds[i]` and above the previous bound; the last is `+Inf`.
    buckets: Box<[AtomicU64]>,
}

impl Distribution {
    fn new(bounds: &'static [u64]) -> Self {
        Self {
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            last: AtomicU64::new(0),
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline]
    pub fn observe(&self, v: u64) {
        self.observe_n(v, 1);
    }

    /// Observes the value `v` `n` times (things that completed together).
    #[inline]
    pub fn observe_n(&self, v: u64, n: u64) {
        if n == 0 {
            return;
        }
        self.count.fetch_add(n, Relaxed);
        self.sum.fetch_add(v.saturating_mul(n), Relaxed);
        self.min.fetch_min(v, Relaxed);
        self.max.fetch_max(v, Relaxed);
        self.last.store(v, Relaxed);
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(n, Relaxed);
    }

    /// Observes a duration in milliseconds.
    #[inline]
    pub fn observe_since(&self, start: std::time::Instant) {
        self.observe(start.elapsed().as_millis() as u64);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn sum(&self) -> u64 {
        self.sum.load(Relaxed)
    }

    /// The latest observation (0 before the first).
    pub fn last(&self) -> u64 {
        self.last.load(Relaxed)
    }

    /// Minimum and maximum since the last call (`None` without observations), and
    /// starts a new period.
    pub fn take_min_max(&self) -> Option<(u64, u64)> {
        let min = self.min.swap(u64::MAX, Relaxed);
        let max = self.max.swap(0, Relaxed);
        (min != u64::MAX).then_some((min, max.max(min)))
    }

    /// Cumulative bucket counts, Prometheus style (`le` bound, count), ending with `+Inf`.
    pub fn cumulative_buckets(&self) -> Vec<(Option<u64>, u64)> {
        let mut acc = 0;
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                acc += b.load(Relaxed);
                (self.bounds.get(i).copied(), acc)
            })
            .collect()
    }
}

/// A read-only value that lives elsewhere (the producer's own counters), read when
/// exported. Several sources of one series are added up.
pub type Source = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The value behind a series.
#[derive(Clone)]
pub enum Value {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Distribution(Arc<Distribution>),
    Observed(Vec<Source>),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Counter(c) => write!(f, "Counter({})", c.get()),
            Self::Gauge(g) => write!(f, "Gauge({})", g.get()),
            Self::Distribution(d) => write!(f, "Distribution(count {})", d.count()),
            Self::Observed(s) => write!(f, "Observed({} sources)", s.len()),
        }
    }
}

/// Dimensions of a series, in a fixed order.
pub type Dims = Vec<(&'static Dim, String)>;

/// One metric with one set of dimension values.
#[derive(Debug, Clone)]
pub struct Series {
    pub def: &'static Def,
    pub dims: Dims,
    pub value: Value,
}

impl Series {
    /// The current value of a counter, gauge or observed counter.
    pub fn scalar(&self) -> i64 {
        match &self.value {
            Value::Counter(c) => c.get() as i64,
            Value::Gauge(g) => g.get(),
            Value::Distribution(d) => d.sum() as i64,
            Value::Observed(s) => s.iter().map(|f| f()).sum::<u64>() as i64,
        }
    }
}

type Key = (&'static str, Vec<(&'static str, String)>);

/// A series' identity: the metric's name and its dimensions' CloudWatch names and values.
fn key(def: &Def, dims: &Dims) -> Key {
    (
        def.name,
        dims.iter()
            .map(|(d, v)| (d.cloudwatch, v.clone()))
            .collect(),
    )
}

/// Every series of the process.
#[derive(Debug)]
pub struct Registry {
    level: AtomicU8,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    series: Vec<Series>,
    index: HashMap<Key, usize>,
}

impl Registry {
    pub fn new(level: Level) -> Self {
        Self {
            level: AtomicU8::new(level as u8),
            inner: Mutex::default(),
        }
    }

    pub fn level(&self) -> Level {
        level_from_u8(self.level.load(Relaxed))
    }

    pub fn set_level(&self, level: Level) {
        self.level.store(level as u8, Relaxed);
    }

    /// Whether series of `def` are recorded at the current level.
    pub fn enabled(&self, def: &Def) -> bool {
        let level = self.level();
        level != Level::None && def.level <= level
    }

    /// Whether per-shard dimensions are recorded.
    pub fn detailed(&self) -> bool {
        self.level() == Level::Detailed
    }

    /// The series of `def` with `dims`, created by `make` when new; `None` when `def` is not
    /// recorded at this level.
    fn resolve(
        &self,
        def: &'static Def,
        dims: Dims,
        make: impl FnOnce() -> Value,
    ) -> Option<Value> {
        if !self.enabled(def) {
            return None;
        }
        let key = key(def, &dims);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&i) = inner.index.get(&key) {
            return Some(inner.series[i].value.clone());
        }
        let value = make();
        let i = inner.series.len();
        inner.series.push(Series {
            def,
            dims,
            value: value.clone(),
        });
        inner.index.insert(key, i);
        Some(value)
    }

    pub fn counter(&self, def: &'static Def, dims: Dims) -> Arc<Counter> {
        debug_assert_eq!(def.kind, Kind::Counter, "{}", def.name);
        match self.resolve(def, dims, || Value::Counter(Arc::default())) {
            Some(Value::Counter(c)) => c,
            _ => Arc::default(),
        }
    }

    pub fn gauge(&self, def: &'static Def, dims: Dims) -> Arc<Gauge> {
        debug_assert_eq!(def.kind, Kind::Gauge, "{}", def.name);
        match self.resolve(def, dims, || Value::Gauge(Arc::default())) {
            Some(Value::Gauge(g)) => g,
            _ => Arc::default(),
        }
    }

    pub fn distribution(&self, def: &'static Def, dims: Dims) -> Arc<Distribution> {
        debug_assert_eq!(def.kind, Kind::Distribution, "{}", def.name);
        match self.resolve(def, dims, || {
            Value::Distribution(Arc::new(Distribution::new(def.buckets)))
        }) {
            Some(Value::Distribution(d)) => d,
            _ => Arc::new(Distribution::new(def.buckets)),
        }
    }

    /// Adds a value kept elsewhere to the counter series of `def` with `dims`.
    pub fn observe(&self, def: &'static Def, dims: Dims, source: Source) {
        debug_assert_eq!(def.kind, Kind::Counter, "{}", def.name);
        if !self.enabled(def) {
            return;
        }
        let key = key(def, &dims);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&i) = inner.index.get(&key) {
            if let Value::Observed(sources) = &mut inner.series[i].value {
                sources.push(source);
            }
            return;
        }
        let i = inner.series.len();
        inner.series.push(Series {
            def,
            dims,
            value: Value::Observed(vec![source]),
        });
        inner.index.insert(key, i);
    }

    /// Every series, in the order they were created (the handles are shared, so reading
    /// them after the lock is released sees live values).
    pub fn series(&self) -> Vec<Series> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.series.clone()
    }
}

/// The process's registry. Its level is set once from the config
/// ([`Registry::set_level`]) before the workers resolve their handles.
pub fn global() -> &'static Registry {
    static GLOBAL: OnceLock<Registry> = OnceLock::new();
    GLOBAL.get_or_init(|| Registry::new(Level::Detailed))
}

/// Dimensions of a stream (`StreamName`), plus the shard (`ShardId`) at `detailed`.
pub fn stream_shard(registry: &Registry, stream: &str, shard: &str) -> Dims {
    let mut d = vec![(&defs::STREAM, stream.to_string())];
    if registry.detailed() {
        d.push((&defs::SHARD, shard.to_string()));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_of_one_series_are_shared() {
        let r = Registry::new(Level::Detailed);
        let a = r.counter(&defs::RECORDS_PROCESSED, vec![(&defs::STREAM, "s".into())]);
        let b = r.counter(&defs::RECORDS_PROCESSED, vec![(&defs::STREAM, "s".into())]);
        let c = r.counter(&defs::RECORDS_PROCESSED, vec![(&defs::STREAM, "t".into())]);
        a.add(2);
        b.inc();
        c.inc();
        let s = r.series();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].scalar(), 3);
        assert_eq!(s[1].scalar(), 1);
    }

    #[test]
    fn levels_decide_what_is_registered() {
        let r = Registry::new(Level::Summary);
        // A detailed-only metric gives a detached handle.
        let d = r.distribution(&defs::GET_RECORDS_TIME, vec![]);
        d.observe(5);
        assert!(r.series().is_empty());
        assert_eq!(
            stream_shard(&r, "s", "shardId-0").len(),
            1,
            "no shard dimension at summary"
        );
        r.counter(&defs::RECORDS_PROCESSED, vec![]).inc();
        assert_eq!(r.series().len(), 1);
        let none = Registry::new(Level::None);
        none.counter(&defs::RECORDS_PROCESSED, vec![]).inc();
        assert!(none.series().is_empty());
    }

    #[test]
    fn distributions_keep_period_extremes_and_buckets() {
        let r = Registry::new(Level::Detailed);
        let d = r.distribution(&defs::GET_RECORDS_TIME, vec![]);
        for v in [3, 70, 1] {
            d.observe(v);
        }
        assert_eq!((d.count(), d.sum()), (3, 74));
        assert_eq!(d.take_min_max(), Some((1, 70)));
        assert_eq!(d.take_min_max(), None, "a new period has no observations");
        let b = d.cumulative_buckets();
        assert_eq!(b.last(), Some(&(None, 3)));
        assert!(b.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative");
    }

    #[test]
    fn observed_sources_add_up() {
        let r = Registry::new(Level::Detailed);
        r.observe(&defs::USER_RECORDS_PUT, vec![], Arc::new(|| 2));
        r.observe(&defs::USER_RECORDS_PUT, vec![], Arc::new(|| 5));
        assert_eq!(r.series()[0].scalar(), 7);
    }
}
