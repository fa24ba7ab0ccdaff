//! Command-line options of `whep-bridge testsrc`.
//!
//! Every misbehaviour flag sets a server-wide default; the same option can be set per session
//! in the query string of the WHEP POST (the key is given in each flag's help), so a user can
//! emulate SRS for everything or break a single stream.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::behaviour::{parse_fec, parse_freq, parse_pct, parse_secs, Behaviour};
use crate::config::RtcConfig;

/// Extra help for the `testsrc` subcommand: its `after_help` (set on [`TestSrcArgs`]).
pub const TESTSRC_AFTER_HELP: &str = "\
Endpoints:
  POST   /whep/{name}                          offer (application/sdp) -> 201 + answer
  POST   /rtc/v1/whep/?app=APP&stream=NAME     SRS style, Location is SRS-like
  DELETE <Location>                            ends the session
  GET    /healthz, GET /stats                  liveness, per-session JSON figures

Control (loopback tool for test harnesses, no auth): make the source unreachable for
the clients whose User-Agent contains SUB (cluster nodes send `whep-bridge/V (node ID)`):
  POST   /control/block?agent=SUB              refuse their play POSTs (503 without
                                               Retry-After, or a closed connection with
                                               --srs-errors) and drop their live sessions
                                               at once, like drop_after
  POST   /control/unblock[?agent=SUB]          lift that rule (no agent: all of them)
  both answer 200 {\"blocked\":[rules],\"dropped\":N}

Per-session overrides go in the POST query string, alongside app/stream:
  freq, freq_r, fec, start_seq, start_ts, delay_start, silence_after, silence_for,
  silence_jump, drop_after, seq_jump_every, seq_jump, loss, reorder
  e.g. /whep/s1?freq=437&freq_r=1013&silence_after=5&silence_for=3
Times are seconds (fractions allowed), counted from the first RTP packet except
delay_start (counted from the answer); `off` cancels a server-wide default.

Audio: Opus 48 kHz stereo, 64 kbit/s, 20 ms frames, each channel a 0.3 FS sine; in-band
FEC is enabled and carried when fec > 0. One encoder runs per distinct tone pair and fec
setting, shared by all its sessions.";

/// Options of the synthetic WHEP source.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = TESTSRC_AFTER_HELP)]
pub struct TestSrcArgs {
    /// HTTP address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8088", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Local IPs offered as ICE candidates (comma-separated or repeated). The default is
    /// loopback only, for tests and same-host use; give a LAN address to serve other hosts,
    /// or 0.0.0.0 for every local IPv4 address.
    #[arg(
        long = "rtc-ip",
        value_name = "IP",
        value_delimiter = ',',
        default_value = "127.0.0.1"
    )]
    pub rtc_ips: Vec<IpAddr>,

    /// UDP port range for ICE candidates, inclusive (default: any free port).
    #[arg(long = "udp-ports", value_name = "MIN-MAX", value_parser = parse_port_range)]
    pub udp_ports: Option<PortRange>,

    /// Left channel tone in Hz (per session: ?freq=).
    #[arg(long, default_value = "440", value_name = "HZ", value_parser = parse_freq)]
    pub freq: f64,

    /// Right channel tone in Hz (per session: ?freq_r=).
    #[arg(long = "freq-r", default_value = "660", value_name = "HZ", value_parser = parse_freq)]
    pub freq_r: f64,

    /// Packet loss (%) the Opus encoder plans for. Above 0 libopus switches to SILK/hybrid
    /// and carries in-band FEC, but the tones get less exact (about 3 % off at 10); 0 keeps
    /// clean CELT tones (per session: ?fec=).
    #[arg(long, default_value_t = 0, value_name = "PCT", value_parser = parse_fec)]
    pub fec: u8,

    /// Sequence number of the first RTP packet; SRS uses 0 (per session: ?start_seq=).
    #[arg(long = "start-seq", default_value_t = 0, value_name = "N")]
    pub start_seq: u16,

    /// RTP timestamp of the first packet; SRS uses 0 (per session: ?start_ts=).
    #[arg(long = "start-ts", default_value_t = 0, value_name = "N")]
    pub start_ts: u32,

    /// Answer 201 but send no RTP for this long, like SRS for a stream not yet published
    /// (per session: ?delay_start=).
    #[arg(long = "delay-start", value_name = "SECS", value_parser = parse_secs)]
    pub delay_start: Option<Duration>,

    /// Stop sending RTP after this long with no other signal (connection stays up), like SRS
    /// when the publisher leaves (per session: ?silence_after=).
    #[arg(long = "silence-after", value_name = "SECS", value_parser = parse_secs)]
    pub silence_after: Option<Duration>,

    /// Resume after this much silence with the same SSRC and a sequence jump, like an SRS
    /// republish; unset = silent for good (per session: ?silence_for=).
    #[arg(long = "silence-for", value_name = "SECS", value_parser = parse_secs)]
    pub silence_for: Option<Duration>,

    /// Sequence-number jump when resuming after silence (per session: ?silence_jump=).
    #[arg(long = "silence-jump", default_value_t = 5_000, value_name = "N")]
    pub silence_jump: u16,

    /// Close the peer connection abruptly after this long: no BYE, no HTTP signal
    /// (per session: ?drop_after=).
    #[arg(long = "drop-after", value_name = "SECS", value_parser = parse_secs)]
    pub drop_after: Option<Duration>,

    /// Jump the sequence number every this long, timestamps continuous
    /// (per session: ?seq_jump_every=).
    #[arg(long = "seq-jump-every", value_name = "SECS", value_parser = parse_secs)]
    pub seq_jump_every: Option<Duration>,

    /// Size of each periodic sequence jump (per session: ?seq_jump=).
    #[arg(long = "seq-jump", default_value_t = 1_000, value_name = "N")]
    pub seq_jump: u16,

    /// Drop this percentage of packets at random (per session: ?loss=).
    #[arg(long, default_value = "0", value_name = "PCT", value_parser = parse_pct)]
    pub loss: f64,

    /// Swap this percentage of packets with the next one (per session: ?reorder=).
    #[arg(long, default_value = "0", value_name = "PCT", value_parser = parse_pct)]
    pub reorder: f64,

    /// Report every error (unknown path, bad SDP, unknown stream, full, ...) by closing the
    /// connection with no HTTP response, as SRS does; otherwise plain HTTP errors.
    #[arg(long = "srs-errors")]
    pub srs_errors: bool,

    /// Answer as a full ICE agent with `setup:active` (webrtc-rs default) instead of the
    /// SRS-like ICE-lite, `setup:passive` answer.
    #[arg(long = "full-ice")]
    pub full_ice: bool,

    /// Answer POST /whep/{name} with an SRS-like Location
    /// (/rtc/v1/whip/?action=delete&token=..) too; the SRS endpoint always does.
    #[arg(long = "srs-location")]
    pub srs_location: bool,

    /// Serve only these stream names (comma-separated); others are errors. Default: any.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub streams: Vec<String>,

    /// Refuse new sessions with 503 + Retry-After beyond this many.
    #[arg(long = "max-sessions", value_name = "N")]
    pub max_sessions: Option<usize>,

    /// Longest wait for ICE gathering before answering with what was gathered.
    #[arg(long = "gather-timeout", default_value = "5", value_name = "SECS", value_parser = parse_secs)]
    pub gather_timeout: Duration,

    /// A session whose client never connects (ICE + DTLS) is dropped after this long.
    #[arg(long = "connect-timeout", default_value = "30", value_name = "SECS", value_parser = parse_secs)]
    pub connect_timeout: Duration,
}

/// An inclusive UDP port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

/// Parses `MIN-MAX`.
pub fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected MIN-MAX, e.g. 40000-40100"))?;
    let min: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?} is not a port"))?;
    let max: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("{b:?} is not a port"))?;
    if min == 0 || min > max {
        return Err(format!("{s:?}: need 1 <= MIN <= MAX"));
    }
    Ok(PortRange { min, max })
}

impl Default for TestSrcArgs {
    /// The documented defaults (the same as `whep-bridge testsrc` with no flags).
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: TestSrcArgs,
        }
        // Parsing no arguments only applies the compile-time defaults above; a failure is a
        // bug in those attributes, caught by the unit test below.
        match <Wrapper as clap::Parser>::try_parse_from(["testsrc"]) {
            Ok(w) => w.args,
            Err(e) => panic!("testsrc defaults do not parse: {e}"),
        }
    }
}

impl TestSrcArgs {
    /// Defaults with another listen address (tests use `127.0.0.1:0`).
    pub fn on(listen: SocketAddr) -> Self {
        Self {
            listen,
            ..Self::default()
        }
    }

    /// The server-wide behaviour of every session (before query overrides).
    pub fn behaviour(&self) -> Behaviour {
        Behaviour {
            freq: self.freq,
            freq_r: self.freq_r,
            fec_pct: self.fec,
            start_seq: self.start_seq,
            start_ts: self.start_ts,
            delay_start: self.delay_start,
            silence_after: self.silence_after,
            silence_for: self.silence_for,
            silence_jump: self.silence_jump,
            drop_after: self.drop_after,
            seq_jump_every: self.seq_jump_every.filter(|d| !d.is_zero()),
            seq_jump: self.seq_jump,
            loss_pct: self.loss,
            reorder_pct: self.reorder,
        }
    }

    /// WebRTC transport settings: loopback candidates on, IPs and ports as given.
    pub fn rtc_config(&self) -> RtcConfig {
        let any = self.rtc_ips.iter().any(IpAddr::is_unspecified);
        RtcConfig {
            include_loopback: true,
            allowed_ips: if any {
                Vec::new()
            } else {
                self.rtc_ips.clone()
            },
            udp_port_range: self.udp_ports.map(|r| (r.min, r.max)),
            ipv6: self.rtc_ips.iter().any(|ip| ip.is_ipv6()),
            srs_like_answer: !self.full_ice,
            ..RtcConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::net::Ipv4Addr;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TestSrcArgs,
    }

    #[test]
    fn defaults_are_documented_values() {
        let a = TestSrcArgs::default();
        assert_eq!(a.listen, "127.0.0.1:8088".parse::<SocketAddr>().unwrap());
        assert_eq!(a.rtc_ips, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        assert_eq!(a.behaviour(), Behaviour::default());
        assert_eq!(a.gather_timeout, Duration::from_secs(5));
        let rtc = a.rtc_config();
        assert!(rtc.include_loopback);
        assert_eq!(rtc.allowed_ips, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        assert_eq!(rtc.udp_port_range, None);
        assert!(!rtc.ipv6);
    }

    #[test]
    fn flags_map_to_behaviour_and_rtc() {
        let a = Cli::try_parse_from([
            "t",
            "--listen=127.0.0.1:0",
            "--rtc-ip=0.0.0.0",
            "--udp-ports=40000-40100",
            "--freq=500",
            "--loss=3",
            "--silence-after=2.5",
            "--srs-errors",
            "--streams=a,b",
            "--max-sessions=4",
        ])
        .unwrap()
        .args;
        let b = a.behaviour();
        assert_eq!(b.freq, 500.0);
        assert_eq!(b.loss_pct, 3.0);
        assert_eq!(b.silence_after, Some(Duration::from_millis(2500)));
        assert!(a.srs_errors);
        assert_eq!(a.streams, vec!["a", "b"]);
        assert_eq!(a.max_sessions, Some(4));
        let rtc = a.rtc_config();
        assert!(rtc.allowed_ips.is_empty(), "0.0.0.0 = every address");
        assert_eq!(rtc.udp_port_range, Some((40_000, 40_100)));
    }

    #[test]
    fn help_lists_the_endpoints_and_control_routes() {
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for route in [
            "/whep/{name}",
            "/control/block?agent=SUB",
            "/control/unblock",
        ] {
            assert!(help.contains(route), "{route} missing from:\n{help}");
        }
    }

    #[test]
    fn bad_flags_are_rejected() {
        for bad in [
            "--udp-ports=5-1",
            "--udp-ports=40000",
            "--freq=5",
            "--loss=200",
            "--rtc-ip=nope",
            "--fec=101",
        ] {
            assert!(Cli::try_parse_from(["t", bad]).is_err(), "{bad}");
        }
    }
}
