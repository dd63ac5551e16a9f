//! The `shardline` command.

/// jemalloc, not the platform's malloc: in the consumer's pass-through, glibc's malloc took
/// about a quarter of the CPU (fast-bin consolidation whenever the Pulsar client grows a
/// batch buffer), and jemalloc cut the CPU per record by about a third for the same peak
/// memory (BENCHMARKS.md, "Hot path"). Build with `--no-default-features` for the
/// platform's allocator (heap profilers such as heaptrack only see that one).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    shardline::cli::main()
}
