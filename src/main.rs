//! `airlock`, the builder. Everything lives in the library; see `airlock --help`.

fn main() -> std::process::ExitCode {
    airlock::build::cli::main()
}
