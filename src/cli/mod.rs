//! Command line (clap): `pull` runs one stream in the foreground, `testsrc` a synthetic
//! WHEP source, `sink` a WebSocket consumer that reports what arrives, `serve` a node, and
//! `demo` source + sink + node in one process.

mod demo;
mod pull;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::{init_logging, LogFormat};

#[derive(Parser, Debug)]
#[command(
    name = "whep-bridge",
    version,
    about = "Pulls WebRTC (WHEP/SRS) audio, converts it to PCM and streams it over WebSocket"
)]
struct Cli {
    /// Log format [default: human; for `serve`, the config's node.log_format].
    #[arg(long, global = true, value_enum, env = "WHEP_BRIDGE_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node: the HTTP API and the streams it manages.
    Serve(serve::ServeArgs),
    /// Pull one stream in the foreground: WHEP in, PCM over WebSocket out.
    Pull(pull::PullArgs),
    /// Run a synthetic WHEP source sending Opus 48 kHz stereo tones (SRS-like behaviour on demand).
    Testsrc(crate::testsrc::TestSrcArgs),
    /// Run a WebSocket consumer that logs how much audio each stream delivers.
    Sink(crate::sink::SinkArgs),
    /// Try it all in one process: test source, sink and a node running N streams; prints
    /// live per-stream figures, a summary and PASS/FAIL (exit code 0/1).
    Demo(demo::DemoArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(_) => demo::init_logging(cli.log_format.unwrap_or_default()),
        // `serve` starts logging once its configuration is read (node.log_format).
        Command::Serve(_) => {}
        _ => init_logging(cli.log_format.unwrap_or_default()),
    }
    // awc (rustls) and webrtc-rs may both pull in a rustls crypto provider; pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args, cli.log_format),
        Command::Pull(args) => pull::run(args),
        Command::Testsrc(args) => run_testsrc(args),
        Command::Sink(args) => tokio_main(crate::sink::run(args)),
        Command::Demo(args) => match demo::run(args) {
            Ok(true) => return ExitCode::SUCCESS,
            // The summary already says why.
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whep-bridge: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_testsrc(args: crate::testsrc::TestSrcArgs) -> Result<(), String> {
    tokio_main(async move { crate::testsrc::run(args).await.map_err(|e| e.to_string()) })
}

/// Runs a tool (testsrc, sink) on a multi-thread tokio runtime.
fn tokio_main(fut: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(fut)
}

/// Resolves on Ctrl-C or SIGTERM with a word for the log.
pub(crate) async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return "interrupted",
                _ = term.recv() => return "terminated",
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "interrupted"
}
