//! The `shardline` command.

/// jemalloc, not the platform's malloc: in the consumer's pass-through, glibc's malloc took
/// about a quarter of the CPU (fast-bin consolidation whenever the Pulsar client grows a
/// batch buffer), and jemalloc cut the CPU per record by about a third for the same peak
/// memory (BENCHMARKS.md, "Hot path"). Build with `--no-default-features` for the
/// platform's allocator (heap profilers such as heaptrack only see that one).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read by jemalloc at its first allocation (`_RJEM_MALLOC_CONF` in
/// the environment still overrides them): one arena per CPU instead of four, and freed
/// pages returned to the system after a second instead of ten, by a background thread so
/// that an idle worker returns them too. Peak memory of the 8-shard pass-through and of a
/// producer of 1 KiB records drops by the pages the other arenas kept (BENCHMARKS.md,
/// "Performance round"); CPU per record did not measurably change.
// The symbol is jemalloc's `malloc_conf` (under the `_rjem_` prefix tikv-jemalloc-sys
// builds it with): a pointer to a NUL-terminated string, defined nowhere else.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 80] =
    b"background_thread:true,percpu_arena:percpu,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    shardline::cli::main()
}
