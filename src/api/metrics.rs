//! Prometheus text exposition of the node's streams (`GET /metrics`), rendered from the
//! registry's stream list: a plain function, tested without a server.

use std::fmt::Write;

use crate::node::registry::StreamStatus;
use crate::pipeline::messages::StreamState;
use crate::pipeline::stats::LATENCY_BUCKETS_MS;

const STATES: [StreamState; 7] = [
    StreamState::Starting,
    StreamState::Connecting,
    StreamState::Live,
    StreamState::Stalled,
    StreamState::Reconnecting,
    StreamState::Failing,
    StreamState::Stopped,
];

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every metric of this node.
pub fn render(node: &str, streams: &[StreamStatus]) -> String {
    let mut out = String::with_capacity(1024 + streams.len() * 1024);
    let node = label(node);

    header(
        &mut out,
        "whep_bridge_streams",
        "gauge",
        "Streams on this node by state.",
    );
    for state in STATES {
        let n = streams.iter().filter(|s| s.state == state).count();
        let _ = writeln!(
            out,
            "whep_bridge_streams{{node=\"{node}\",state=\"{state}\"}} {n}"
        );
    }

    type Get = fn(&StreamStatus) -> f64;
    let per_stream: [(&str, &str, &str, Get); 12] = [
        (
            "whep_bridge_rtp_packets_total",
            "counter",
            "RTP packets received.",
            |s| s.stats.packets as f64,
        ),
        (
            "whep_bridge_rtp_lost_total",
            "counter",
            "RTP packets declared lost.",
            |s| s.stats.lost as f64,
        ),
        (
            "whep_bridge_concealed_seconds_total",
            "counter",
            "Audio synthesised by FEC/PLC.",
            |s| s.stats.concealed_ms as f64 / 1000.0,
        ),
        (
            "whep_bridge_chunks_sent_total",
            "counter",
            "Chunks sent to the consumer (first sends).",
            |s| s.stats.chunks as f64,
        ),
        (
            "whep_bridge_bytes_sent_total",
            "counter",
            "PCM bytes sent to the consumer.",
            |s| s.stats.bytes as f64,
        ),
        (
            "whep_bridge_dropped_chunks_total",
            "counter",
            "Chunks dropped beyond the replay bound.",
            |s| s.stats.dropped_chunks as f64,
        ),
        (
            "whep_bridge_ws_connects_total",
            "counter",
            "Consumer WebSocket connections made.",
            |s| s.stats.ws_connects as f64,
        ),
        (
            "whep_bridge_consumer_connected",
            "gauge",
            "1 while the consumer connection is up, 0 during an outage (audio is buffered).",
            |s| f64::from(u8::from(s.stats.consumer_connected)),
        ),
        (
            "whep_bridge_whep_connects_total",
            "counter",
            "WHEP sessions started.",
            |s| s.stats.whep_connects as f64,
        ),
        (
            "whep_bridge_whep_reconnects_total",
            "counter",
            "WHEP reconnects after a failure.",
            |s| s.stats.reconnects as f64,
        ),
        (
            "whep_bridge_buffered_seconds",
            "gauge",
            "Audio held for the consumer.",
            |s| s.stats.buffered_ms as f64 / 1000.0,
        ),
        (
            "whep_bridge_stream_epoch",
            "gauge",
            "Lease epoch of the stream on this node.",
            |s| s.epoch as f64,
        ),
    ];
    for (name, kind, help, get) in per_stream {
        header(&mut out, name, kind, help);
        for s in streams {
            let _ = writeln!(
                out,
                "{name}{{node=\"{node}\",stm_id=\"{}\"}} {}",
                label(&s.spec.stm_id),
                get(s)
            );
        }
    }

    let name = "whep_bridge_pipeline_latency_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "RTP arrival to WebSocket send of the chunk holding it.",
    );
    let mut buckets = vec![0u64; LATENCY_BUCKETS_MS.len() + 1];
    let (mut sum_us, mut count) = (0u64, 0u64);
    for s in streams {
        for (total, b) in buckets.iter_mut().zip(&s.stats.latency_buckets) {
            *total += b;
        }
        sum_us += s.stats.latency_sum_us;
        count += s.stats.latency_count;
    }
    let mut cumulative = 0;
    for (i, ms) in LATENCY_BUCKETS_MS.iter().enumerate() {
        cumulative += buckets[i];
        let le = *ms as f64 / 1000.0;
        let _ = writeln!(
            out,
            "{name}_bucket{{node=\"{node}\",le=\"{le}\"}} {cumulative}"
        );
    }
    cumulative += buckets[LATENCY_BUCKETS_MS.len()];
    let _ = writeln!(
        out,
        "{name}_bucket{{node=\"{node}\",le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(out, "{name}_sum{{node=\"{node}\"}} {}", sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{node=\"{node}\"}} {count}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::spec::StreamView;
    use crate::pipeline::stats::StreamStats;

    fn status(id: &str, state: StreamState, stats: &StreamStats) -> StreamStatus {
        StreamStatus {
            spec: StreamView {
                stm_id: id.to_owned(),
                trace_id: None,
                whep_url: "http://h/whep/x".to_owned(),
                ws_url: None,
                ws_headers: Default::default(),
                whep_token: None,
                ice_servers: None,
                output: None,
            },
            state,
            owner: "n1".to_owned(),
            epoch: 0,
            stats: stats.snapshot(),
            last_error: None,
        }
    }

    #[test]
    fn renders_states_counters_and_a_cumulative_histogram() {
        let a = StreamStats::default();
        a.packets.store(500, std::sync::atomic::Ordering::Relaxed);
        a.record_latency(180_000);
        a.record_latency(40_000);
        let b = StreamStats::default();
        b.record_latency(9_000_000);
        let text = render(
            "n1",
            &[
                status("a", StreamState::Live, &a),
                status("b", StreamState::Stalled, &b),
            ],
        );
        assert!(text.contains("whep_bridge_streams{node=\"n1\",state=\"live\"} 1\n"));
        assert!(text.contains("whep_bridge_streams{node=\"n1\",state=\"failing\"} 0\n"));
        assert!(text.contains("whep_bridge_rtp_packets_total{node=\"n1\",stm_id=\"a\"} 500\n"));
        assert!(text
            .contains("whep_bridge_pipeline_latency_seconds_bucket{node=\"n1\",le=\"0.05\"} 1\n"));
        assert!(text
            .contains("whep_bridge_pipeline_latency_seconds_bucket{node=\"n1\",le=\"0.2\"} 2\n"));
        assert!(text
            .contains("whep_bridge_pipeline_latency_seconds_bucket{node=\"n1\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("whep_bridge_pipeline_latency_seconds_count{node=\"n1\"} 3\n"));
        assert!(text.contains("whep_bridge_pipeline_latency_seconds_sum{node=\"n1\"} 9.22\n"));
        // Every sample line is `name{labels} number`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect(line);
            assert!(
                series.starts_with("whep_bridge_") && series.ends_with('}'),
                "{line}"
            );
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
