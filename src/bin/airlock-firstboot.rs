//! `airlock-firstboot`, the runner on each cloned VM. Everything lives in the
//! library; see `airlock-firstboot --help`.

fn main() -> std::process::ExitCode {
    airlock::vm::cli::main()
}
