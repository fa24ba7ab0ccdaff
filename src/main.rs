//! `whep-bridge` command line: see `whep-bridge --help`.

fn main() -> std::process::ExitCode {
    whep_bridge::cli::main()
}
