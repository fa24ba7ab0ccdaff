//! What `whep-bridge demo` prints: the live per-stream table, the final summary and the
//! PASS/FAIL verdict. Plain functions over plain figures (the node's stream status and the
//! sink's tally), so the wording and the verdict rule are unit-tested without a network.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use crate::node::registry::StreamStatus;
use crate::pipeline::messages::StreamState;
use crate::pipeline::stats::StatsSnapshot;
use crate::sink::tally::StreamTally;

use super::procstat::CpuUse;

/// Share of the wall time since its first chunk that a stream must have delivered to pass.
pub const MIN_DELIVERED_RATIO: f64 = 0.9;

/// One stream as the node and the sink see it at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub stm_id: String,
    pub state: StreamState,
    pub stats: StatsSnapshot,
    /// Audio seconds received by the sink.
    pub delivered_s: f64,
    /// Audio received per second of wall time at the sink (1.0 = real time).
    pub pace: f64,
    /// Wall time since the sink received this stream's first chunk (`None`: nothing yet).
    pub wall_s: Option<f64>,
}

impl Row {
    /// Delivered audio over wall time since the first chunk. The first chunk counts as
    /// delivered, which balances the chunk still being filled at `now`, so a healthy stream
    /// reads about 1.0.
    pub fn delivered_ratio(&self) -> Option<f64> {
        self.wall_s
            .filter(|w| *w > 0.0)
            .map(|w| self.delivered_s / w)
    }
}

/// Joins the node's streams with what the sink received, in stream order.
pub fn rows(
    streams: &[StreamStatus],
    sink: &BTreeMap<String, StreamTally>,
    now: Instant,
) -> Vec<Row> {
    let mut rows: Vec<Row> = streams
        .iter()
        .map(|s| {
            let id = &s.spec.stm_id;
            let tally = sink.get(id);
            Row {
                stm_id: id.clone(),
                state: s.state,
                stats: s.stats.clone(),
                delivered_s: tally.map_or(0.0, |t| t.seconds),
                pace: tally.map_or(0.0, StreamTally::pace),
                wall_s: tally
                    .and_then(|t| t.first_at)
                    .map(|first| now.saturating_duration_since(first).as_secs_f64()),
            }
        })
        .collect();
    rows.sort_by_cached_key(|r| natural_key(&r.stm_id));
    rows
}

/// Sorts `demo-2` before `demo-10`.
fn natural_key(id: &str) -> (String, u64) {
    let digits = id.len() - id.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = id.split_at(id.len() - digits);
    (stem.to_owned(), num.parse().unwrap_or(0))
}

/// The table header, padded to the rows' widths.
fn header(id_w: usize) -> String {
    format!(
        "{:<id_w$}  {:<12} {:>8} {:>6} {:>7} {:>9} {:>7} {:>11}",
        "stmId", "state", "packets", "lost", "chunks", "audio s", "pace", "latency ms"
    )
}

fn id_width(rows: &[Row]) -> usize {
    rows.iter()
        .map(|r| r.stm_id.len())
        .max()
        .unwrap_or(0)
        .max(5)
}

/// The live table: a status line, a header and one line per stream.
pub fn table(status: &str, rows: &[Row]) -> String {
    let w = id_width(rows);
    let mut out = format!("{status}\n{}\n", header(w));
    for r in rows {
        let _ = writeln!(
            out,
            "{:<w$}  {:<12} {:>8} {:>6} {:>7} {:>9.1} {:>6.3}x {:>11.1}",
            r.stm_id,
            r.state.to_string(),
            r.stats.packets,
            r.stats.lost,
            r.stats.chunks,
            r.delivered_s,
            r.pace,
            r.stats.latency_avg_ms,
        );
    }
    if rows.is_empty() {
        out.push_str("(no streams)\n");
    }
    out
}

/// Why the demo passed or failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub pass: bool,
    /// One line per problem (empty on PASS).
    pub problems: Vec<String>,
}

/// PASS: at least `expected` streams, every one `live` and delivering at least
/// [`MIN_DELIVERED_RATIO`] of the wall time since its first chunk.
pub fn verdict(rows: &[Row], expected: usize) -> Verdict {
    let mut problems = Vec::new();
    if rows.len() < expected {
        problems.push(format!("{} of {expected} streams exist", rows.len()));
    }
    for r in rows {
        if r.state != StreamState::Live {
            problems.push(format!("{}: state {} (want live)", r.stm_id, r.state));
        }
        match r.delivered_ratio() {
            None => problems.push(format!("{}: no audio reached the sink", r.stm_id)),
            Some(q) if q < MIN_DELIVERED_RATIO => problems.push(format!(
                "{}: delivered {:.1} s in {:.1} s ({:.0} % < {:.0} %)",
                r.stm_id,
                r.delivered_s,
                r.wall_s.unwrap_or_default(),
                q * 100.0,
                MIN_DELIVERED_RATIO * 100.0
            )),
            Some(_) => {}
        }
    }
    Verdict {
        pass: problems.is_empty(),
        problems,
    }
}

/// Process-wide figures for the summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resources {
    /// CPU over the measured window.
    pub cpu: Option<CpuUse>,
    /// Resident memory now and at its peak, KiB.
    pub rss_kib: Option<(u64, u64)>,
}

/// The final summary: per-stream delivery, then the process's CPU and memory. `window`
/// says what CPU was measured over (e.g. "8.0 s once every stream was delivering").
pub fn summary(rows: &[Row], window: &str, res: &Resources) -> String {
    let w = id_width(rows);
    let mut out = format!("Summary (CPU measured over {window})\n");
    let _ = writeln!(
        out,
        "{:<w$}  {:>10} {:>8} {:>7} {:>8} {:>6} {:>12} {:>10} {:>11}",
        "stmId",
        "delivered",
        "wall",
        "ratio",
        "pace",
        "lost",
        "concealed",
        "reconnects",
        "latency ms"
    );
    for r in rows {
        let ratio = r
            .delivered_ratio()
            .map_or_else(|| "-".to_owned(), |q| format!("{:.1}%", q * 100.0));
        let _ = writeln!(
            out,
            "{:<w$}  {:>9.1}s {:>7.1}s {:>7} {:>7.3}x {:>6} {:>10}ms {:>10} {:>11.1}",
            r.stm_id,
            r.delivered_s,
            r.wall_s.unwrap_or_default(),
            ratio,
            r.pace,
            r.stats.lost,
            r.stats.concealed_ms,
            r.stats.reconnects,
            r.stats.latency_avg_ms,
        );
    }
    let n = rows.len().max(1) as f64;
    match res.cpu {
        Some(c) => {
            let _ = writeln!(
                out,
                "CPU (% of one core): node {:.1} % ({:.2} % per stream); whole process {:.1} % \
                 (it also runs testsrc and the sink: {:.1} %)",
                c.node_pct,
                c.node_pct / n,
                c.process_pct,
                c.tools_pct
            );
        }
        None => out.push_str("CPU: not available (no /proc)\n"),
    }
    match res.rss_kib {
        Some((rss, peak)) => {
            let _ = writeln!(
                out,
                "Memory: RSS {:.1} MiB (peak {:.1} MiB) for the whole process: node, testsrc \
                 and sink together",
                rss as f64 / 1024.0,
                peak as f64 / 1024.0
            );
        }
        None => out.push_str("Memory: not available (no /proc)\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::spec::{StreamRequest, StreamView, WsMode};
    use crate::config::StreamSpec;
    use std::time::Duration;

    fn status(id: &str, state: StreamState, packets: u64) -> StreamStatus {
        let req = StreamRequest {
            stm_id: id.to_owned(),
            whep_url: "http://127.0.0.1:1/whep/x".to_owned(),
            trace_id: None,
            ws_url: Some("ws://127.0.0.1:2/x".to_owned()),
            ws_headers: None,
            whep_token: None,
            ice_servers: None,
            output: None,
        };
        let (spec, mode): (StreamSpec, WsMode) = req.resolve(&Default::default()).unwrap();
        StreamStatus {
            spec: StreamView::from_spec(&spec, mode),
            state,
            owner: "demo".to_owned(),
            epoch: 0,
            stats: StatsSnapshot {
                packets,
                ..Default::default()
            },
            last_error: None,
        }
    }

    fn tally(seconds: f64, first: Instant) -> StreamTally {
        StreamTally {
            chunks: (seconds / 0.2).round() as u64,
            seconds,
            first_at: Some(first),
            last_at: Some(first + Duration::from_secs_f64(seconds - 0.2)),
            sample_rate: 16_000,
            channels: 1,
            ..Default::default()
        }
    }

    #[test]
    fn rows_join_node_and_sink_in_natural_order() {
        let now = Instant::now();
        let first = now - Duration::from_secs(10);
        let streams = [
            status("demo-10", StreamState::Live, 500),
            status("demo-2", StreamState::Connecting, 0),
        ];
        let sink = BTreeMap::from([("demo-10".to_owned(), tally(10.0, first))]);
        let rows = rows(&streams, &sink, now);
        assert_eq!(rows[0].stm_id, "demo-2");
        assert_eq!(rows[0].wall_s, None);
        assert_eq!(rows[0].delivered_ratio(), None);
        assert_eq!(rows[1].stm_id, "demo-10");
        assert!((rows[1].delivered_s - 10.0).abs() < 1e-9);
        assert!((rows[1].delivered_ratio().unwrap() - 1.0).abs() < 1e-6);
        assert!((rows[1].pace - 1.0).abs() < 1e-6);

        let t = table("t=10s", &rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[1].starts_with("stmId"));
        assert!(lines[2].starts_with("demo-2 ") && lines[2].contains("connecting"));
        assert!(
            lines[3].contains("live") && lines[3].contains(" 500 "),
            "{t}"
        );
        assert!(
            lines[3].contains("10.0") && lines[3].contains("1.000x"),
            "{t}"
        );
    }

    #[test]
    fn verdict_needs_every_stream_live_and_delivering() {
        let now = Instant::now();
        let first = now - Duration::from_secs(10);
        let mut good = rows(
            &[status("a", StreamState::Live, 1)],
            &BTreeMap::from([("a".to_owned(), tally(9.6, first))]),
            now,
        );
        assert!(verdict(&good, 1).pass);
        // A stream missing from the table fails.
        assert!(!verdict(&good, 2).pass);

        good[0].delivered_s = 8.0; // 80 % of 10 s
        let v = verdict(&good, 1);
        assert!(!v.pass);
        assert!(v.problems[0].contains("80 %"), "{:?}", v.problems);

        good[0].delivered_s = 10.0;
        good[0].state = StreamState::Stalled;
        assert!(!verdict(&good, 1).pass);

        let silent = rows(&[status("b", StreamState::Live, 0)], &BTreeMap::new(), now);
        let v = verdict(&silent, 1);
        assert_eq!(v.problems, vec!["b: no audio reached the sink".to_owned()]);
    }

    #[test]
    fn summary_reports_every_stream_and_the_process() {
        let now = Instant::now();
        let rows = rows(
            &[status("a", StreamState::Live, 1)],
            &BTreeMap::from([("a".to_owned(), tally(8.0, now - Duration::from_secs(8)))]),
            now,
        );
        let res = Resources {
            cpu: Some(CpuUse {
                process_pct: 6.0,
                node_pct: 4.0,
                tools_pct: 2.0,
            }),
            rss_kib: Some((40 * 1024, 48 * 1024)),
        };
        let s = summary(&rows, "8.0 s", &res);
        assert!(s.contains("measured over 8.0 s"), "{s}");
        assert!(s.contains("100.0%"), "{s}");
        assert!(s.contains("node 4.0 % (4.00 % per stream)"), "{s}");
        assert!(s.contains("RSS 40.0 MiB (peak 48.0 MiB)"), "{s}");
        let none = summary(
            &rows,
            "0 s",
            &Resources {
                cpu: None,
                rss_kib: None,
            },
        );
        assert!(none.contains("CPU: not available"));
    }
}
