//! What one test-source session sends and how it misbehaves.
//!
//! Server-wide defaults come from `testsrc` flags; the query string of the WHEP POST overrides
//! them per session (`?freq=437&loss=5`), so one server can serve a clean stream and a broken
//! one side by side. Unknown query keys are ignored, because SRS URLs carry their own
//! (`app`, `stream`, tokens).

use std::time::Duration;

/// Longest duration accepted for any timing option: one day.
const MAX_SECS: f64 = 86_400.0;

/// Tone and misbehaviour settings of one session.
///
/// Times count from the session's first RTP packet, except `delay_start`, which counts from
/// the answer (SRS answers a play request for an unpublished stream, then sends nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Left channel tone in Hz.
    pub freq: f64,
    /// Right channel tone in Hz.
    pub freq_r: f64,
    /// Packet loss the Opus encoder plans for, in percent; above 0 it switches to SILK/hybrid
    /// and carries in-band FEC (at some cost in tone fidelity, see `tone`).
    pub fec_pct: u8,
    /// Sequence number of the first packet (SRS: 0).
    pub start_seq: u16,
    /// RTP timestamp of the first packet (SRS: 0).
    pub start_ts: u32,
    /// Send nothing for this long after the answer.
    pub delay_start: Option<Duration>,
    /// Stop sending RTP, with no other signal, after this long.
    pub silence_after: Option<Duration>,
    /// Resume after this much silence (never, if unset), with a sequence jump.
    pub silence_for: Option<Duration>,
    /// Sequence-number jump on resume after silence (a republish).
    pub silence_jump: u16,
    /// Close the peer connection abruptly after this long.
    pub drop_after: Option<Duration>,
    /// Jump the sequence number every this long (timestamps stay continuous).
    pub seq_jump_every: Option<Duration>,
    /// Size of each periodic sequence jump.
    pub seq_jump: u16,
    /// Percentage of packets dropped at random.
    pub loss_pct: f64,
    /// Percentage of packets swapped with the next one.
    pub reorder_pct: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            freq: 440.0,
            freq_r: 660.0,
            fec_pct: 0,
            start_seq: 0,
            start_ts: 0,
            delay_start: None,
            silence_after: None,
            silence_for: None,
            silence_jump: 5_000,
            drop_after: None,
            seq_jump_every: None,
            seq_jump: 1_000,
            loss_pct: 0.0,
            reorder_pct: 0.0,
        }
    }
}

/// A query parameter with an unusable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query parameter `{key}`: {message}")]
pub struct BehaviourError {
    pub key: String,
    pub message: String,
}

impl Behaviour {
    /// The query keys this type understands (documented in `testsrc --help`).
    pub const QUERY_KEYS: [&'static str; 15] = [
        "freq",
        "freq_l",
        "freq_r",
        "fec",
        "start_seq",
        "start_ts",
        "delay_start",
        "silence_after",
        "silence_for",
        "silence_jump",
        "drop_after",
        "seq_jump_every",
        "seq_jump",
        "loss",
        "reorder",
    ];

    /// Returns a copy with the known keys of `pairs` applied on top of `self`.
    ///
    /// Timing options accept `off` (or `none`) to cancel a server-wide default, and so does
    /// `seq_jump_every=0`; elsewhere `0` is taken literally (`silence_after=0`: never sends).
    pub fn with_query<K, V>(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, BehaviourError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut b = self.clone();
        for (k, v) in pairs {
            let (key, value) = (k.as_ref(), v.as_ref().trim());
            let err = |message: String| BehaviourError {
                key: key.to_owned(),
                message,
            };
            match key {
                "freq" | "freq_l" => b.freq = parse_freq(value).map_err(err)?,
                "freq_r" => b.freq_r = parse_freq(value).map_err(err)?,
                "fec" => b.fec_pct = parse_fec(value).map_err(err)?,
                "start_seq" => b.start_seq = parse_int(value).map_err(err)?,
                "start_ts" => b.start_ts = parse_int(value).map_err(err)?,
                "delay_start" => b.delay_start = parse_opt_secs(value).map_err(err)?,
                "silence_after" => b.silence_after = parse_opt_secs(value).map_err(err)?,
                "silence_for" => b.silence_for = parse_opt_secs(value).map_err(err)?,
                "silence_jump" => b.silence_jump = parse_int(value).map_err(err)?,
                "drop_after" => b.drop_after = parse_opt_secs(value).map_err(err)?,
                "seq_jump_every" => {
                    b.seq_jump_every = parse_opt_secs(value).map_err(err)?;
                    if b.seq_jump_every == Some(Duration::ZERO) {
                        b.seq_jump_every = None;
                    }
                }
                "seq_jump" => b.seq_jump = parse_int(value).map_err(err)?,
                "loss" => b.loss_pct = parse_pct(value).map_err(err)?,
                "reorder" => b.reorder_pct = parse_pct(value).map_err(err)?,
                _ => {}
            }
        }
        Ok(b)
    }
}

/// Parses a tone frequency in Hz: 20 to 20 000 (well below the 24 kHz Nyquist limit).
pub fn parse_freq(s: &str) -> Result<f64, String> {
    let f: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of Hz"))?;
    if !(20.0..=20_000.0).contains(&f) {
        return Err(format!("{f} Hz is outside 20..=20000 Hz"));
    }
    Ok(f)
}

/// Parses the encoder's expected loss: an integer percentage 0 to 100.
pub fn parse_fec(s: &str) -> Result<u8, String> {
    match s.trim().parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(format!("{s:?} is not an integer percentage 0..=100")),
    }
}

/// Parses a percentage 0 to 100.
pub fn parse_pct(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage"))?;
    if !(0.0..=100.0).contains(&p) {
        return Err(format!("{p} is outside 0..=100 %"));
    }
    Ok(p)
}

/// Parses seconds (fractions allowed) into a duration, at most one day.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=MAX_SECS).contains(&secs) {
        return Err(format!("{secs} s is outside 0..={MAX_SECS} s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Like [`parse_secs`], with `off`/`none`/empty meaning "not set".
fn parse_opt_secs(s: &str) -> Result<Option<Duration>, String> {
    match s {
        "" | "off" | "none" => Ok(None),
        _ => parse_secs(s).map(Some),
    }
}

fn parse_int<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a valid integer in range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<Behaviour, BehaviourError> {
        Behaviour::default().with_query(url::form_urlencoded::parse(s.as_bytes()))
    }

    #[test]
    fn defaults_are_srs_like_clean_tones() {
        let b = Behaviour::default();
        assert_eq!((b.freq, b.freq_r), (440.0, 660.0));
        assert_eq!((b.start_seq, b.start_ts), (0, 0));
        assert!(b.silence_after.is_none() && b.drop_after.is_none());
        assert_eq!((b.loss_pct, b.reorder_pct), (0.0, 0.0));
    }

    #[test]
    fn query_overrides_known_keys_and_ignores_others() {
        let b = q("app=live&stream=s1&freq=437&freq_r=1013&token=abc&loss=2.5&reorder=1\
                   &silence_after=1.5&silence_for=2&silence_jump=7&drop_after=30\
                   &seq_jump_every=4&seq_jump=300&delay_start=0.25&start_seq=65530&start_ts=7&fec=10")
        .unwrap();
        assert_eq!((b.freq, b.freq_r), (437.0, 1013.0));
        assert_eq!(b.loss_pct, 2.5);
        assert_eq!(b.reorder_pct, 1.0);
        assert_eq!(b.silence_after, Some(Duration::from_millis(1500)));
        assert_eq!(b.silence_for, Some(Duration::from_secs(2)));
        assert_eq!(b.silence_jump, 7);
        assert_eq!(b.drop_after, Some(Duration::from_secs(30)));
        assert_eq!(b.seq_jump_every, Some(Duration::from_secs(4)));
        assert_eq!(b.seq_jump, 300);
        assert_eq!(b.delay_start, Some(Duration::from_millis(250)));
        assert_eq!((b.start_seq, b.start_ts), (65530, 7));
        assert_eq!(b.fec_pct, 10);
    }

    #[test]
    fn freq_l_is_an_alias_for_freq() {
        assert_eq!(q("freq_l=500").unwrap().freq, 500.0);
    }

    #[test]
    fn off_cancels_a_server_default() {
        let server = Behaviour {
            drop_after: Some(Duration::from_secs(3)),
            seq_jump_every: Some(Duration::from_secs(1)),
            ..Behaviour::default()
        };
        let b = server
            .with_query([("drop_after", "off"), ("seq_jump_every", "0")])
            .unwrap();
        assert_eq!(b.drop_after, None);
        assert_eq!(b.seq_jump_every, None);
        // Untouched keys keep the server default.
        assert_eq!(
            server.with_query([("freq", "500")]).unwrap().drop_after,
            server.drop_after
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        for (query, key) in [
            ("freq=abc", "freq"),
            ("freq=19", "freq"),
            ("freq_r=30000", "freq_r"),
            ("loss=101", "loss"),
            ("reorder=-1", "reorder"),
            ("silence_after=-2", "silence_after"),
            ("drop_after=1e9", "drop_after"),
            ("start_seq=70000", "start_seq"),
            ("seq_jump=x", "seq_jump"),
            ("fec=101", "fec"),
            ("fec=2.5", "fec"),
        ] {
            let e = q(query).unwrap_err();
            assert_eq!(e.key, key, "{query}");
            assert!(e.to_string().contains(key));
        }
    }

    #[test]
    fn secs_accept_fractions() {
        assert_eq!(parse_secs("0.02").unwrap(), Duration::from_millis(20));
        assert_eq!(parse_secs(" 3 ").unwrap(), Duration::from_secs(3));
        assert!(parse_secs("NaN").is_err());
        assert!(parse_secs("inf").is_err());
    }
}
