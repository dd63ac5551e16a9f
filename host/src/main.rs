//! The `shardline` command.

fn main() -> std::process::ExitCode {
    shardline::cli::main()
}
