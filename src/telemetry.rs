//! Logging setup. Human-readable by default, JSON lines with `--log-format json`;
//! `RUST_LOG` overrides the level filter (default `info`, webrtc-rs internals at `error`: its teardown warnings are noise, state changes are logged by us).

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Installs the global subscriber once; later calls are no-ops (tests start many nodes).
pub fn init_logging(format: LogFormat) {
    init_logging_at(format, "info");
}

/// [`init_logging`] with another default level for our own lines (`RUST_LOG` still wins;
/// webrtc-rs internals stay at `error` either way).
pub fn init_logging_at(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},webrtc=error,webrtc_ice=error,webrtc_dtls=error,webrtc_srtp=error,\
             webrtc_mdns=error,dtls=error"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
