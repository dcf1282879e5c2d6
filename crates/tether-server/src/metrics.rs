//! Server metrics in the Prometheus text format, served at `/metrics` on
//! the WebSocket port when [`ServerConfig::metrics`](crate::config::ServerConfig::metrics)
//! is set: connections open, opened, and closed by close code; messages and
//! bytes in and out; bytes waiting in the hub's mailboxes; messages dropped
//! by the overflow policy; keepalive round-trip times as a histogram.
//!
//! Counting is a few relaxed atomic additions per message, on counters
//! shared by all connections.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::hub::Hub;

/// Upper bounds of the round-trip histogram, in seconds.
const RTT_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

#[derive(Default)]
struct Counters {
    open: AtomicU64,
    opened: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    closed_by_code: Mutex<BTreeMap<u16, u64>>,
    rtt_buckets: [AtomicU64; RTT_BUCKETS.len()],
    rtt_count: AtomicU64,
    rtt_sum_micros: AtomicU64,
}

/// A server's metrics. Cheap to clone: clones share the counters.
#[derive(Clone)]
pub struct Metrics {
    counters: Arc<Counters>,
    hub: Option<Hub>,
    /// Whether a server answers `/metrics` with them on its WebSocket port.
    exposed: bool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("open", &self.counters.open.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { counters: Arc::default(), hub: None, exposed: true }
    }
}

impl Metrics {
    /// Empty metrics.
    #[must_use]
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// The same counters, kept by a server that does not answer `/metrics`
    /// on its WebSocket port (they are served elsewhere, e.g. by
    /// `tether::server::serve_metrics` on an address of their own).
    #[must_use]
    pub fn hidden(mut self) -> Metrics {
        self.exposed = false;
        self
    }

    /// Whether a server answers `/metrics` with them on its WebSocket port.
    #[must_use]
    pub fn is_exposed(&self) -> bool {
        self.exposed
    }

    /// Also report this hub's mailboxes and drops.
    #[must_use]
    pub fn with_hub(mut self, hub: Hub) -> Metrics {
        self.hub = Some(hub);
        self
    }

    pub(crate) fn opened(&self) {
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, code: u16) {
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
        *self.counters.closed_by_code.lock().unwrap_or_else(PoisonError::into_inner).entry(code).or_default() += 1;
    }

    pub(crate) fn message_in(&self, bytes: usize) {
        self.counters.messages_in.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn message_out(&self, bytes: usize) {
        self.counters.messages_out.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn round_trip(&self, rtt: Duration) {
        let seconds = rtt.as_secs_f64();
        for (bound, bucket) in RTT_BUCKETS.iter().zip(&self.counters.rtt_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.counters.rtt_count.fetch_add(1, Ordering::Relaxed);
        self.counters.rtt_sum_micros.fetch_add(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The metrics in the Prometheus text exposition format.
    #[must_use]
    pub fn render(&self) -> String {
        let c = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric(
            "tether_connections_open",
            "gauge",
            "WebSocket connections open now.",
            vec![(String::new(), load(&c.open))],
        );
        metric(
            "tether_connections_opened_total",
            "counter",
            "WebSocket connections opened.",
            vec![(String::new(), load(&c.opened))],
        );
        let closed = c.closed_by_code.lock().unwrap_or_else(PoisonError::into_inner).clone();
        metric(
            "tether_connections_closed_total",
            "counter",
            "WebSocket connections closed, by close code (1006: without a close frame).",
            closed.iter().map(|(code, count)| (format!("{{code=\"{code}\"}}"), *count)).collect(),
        );
        metric(
            "tether_messages_received_total",
            "counter",
            "Data messages received.",
            vec![(String::new(), load(&c.messages_in))],
        );
        metric(
            "tether_messages_sent_total",
            "counter",
            "Data messages sent by handlers.",
            vec![(String::new(), load(&c.messages_out))],
        );
        metric(
            "tether_received_bytes_total",
            "counter",
            "Payload bytes received.",
            vec![(String::new(), load(&c.bytes_in))],
        );
        metric(
            "tether_sent_bytes_total",
            "counter",
            "Payload bytes sent by handlers.",
            vec![(String::new(), load(&c.bytes_out))],
        );
        if let Some(hub) = &self.hub {
            let buffered = hub.buffered_total();
            let drops = hub.drops();
            metric(
                "tether_hub_clients",
                "gauge",
                "Clients in the hub's registry.",
                vec![(String::new(), hub.count() as u64)],
            );
            metric(
                "tether_hub_buffered_bytes",
                "gauge",
                "Bytes waiting in the hub's mailboxes.",
                vec![(String::new(), buffered as u64)],
            );
            metric(
                "tether_hub_dropped_total",
                "counter",
                "Messages dropped by each overflow policy.",
                drops.by_policy().iter().map(|(policy, count)| (format!("{{policy=\"{policy}\"}}"), *count)).collect(),
            );
            metric(
                "tether_hub_overflow_closed_total",
                "counter",
                "Connections closed for being too slow (the close policy).",
                vec![(String::new(), drops.closed_connections)],
            );
            if let Some(kept) = hub.history_kept() {
                let one = |value: usize| vec![(String::new(), value as u64)];
                metric("tether_history_topics", "gauge", "Topics whose history is kept here.", one(kept.topics));
                metric(
                    "tether_history_publications",
                    "gauge",
                    "Publications kept in topic histories.",
                    one(kept.publications),
                );
                metric("tether_history_bytes", "gauge", "Bytes of the publications kept (framed).", one(kept.bytes));
            }
            if let Some(engine) = hub.fanout() {
                let status = engine.status();
                let engine = engine.name();
                let rows: [(&str, &str, &str, u64); 9] = [
                    ("up", "gauge", "Whether fan-out to the other servers works now.", u64::from(status.is_up())),
                    ("outages_total", "counter", "Times the link was lost.", status.outages()),
                    ("published_total", "counter", "Publications acknowledged by the broker.", status.published()),
                    ("received_total", "counter", "Publications received and delivered here.", status.received()),
                    (
                        "local_only_total",
                        "counter",
                        "Publications made while the link was down or behind: delivered to this server's clients only.",
                        status.local_only(),
                    ),
                    (
                        "unconfirmed_total",
                        "counter",
                        "Publications on their way when the link failed: delivered here, perhaps not elsewhere.",
                        status.unconfirmed(),
                    ),
                    (
                        "missed_total",
                        "counter",
                        "Other servers' publications that never arrived here (gaps in their numbers).",
                        status.missed(),
                    ),
                    (
                        "recovered_total",
                        "counter",
                        "Of those missed, publications read back from a topic's history and delivered here.",
                        status.recovered(),
                    ),
                    (
                        "replayed_total",
                        "counter",
                        "Own publications the subscription missed, delivered here from what was kept.",
                        status.replayed(),
                    ),
                ];
                for (name, kind, help, value) in rows {
                    metric(&format!("tether_{engine}_{name}"), kind, help, vec![(String::new(), value)]);
                }
            }
        }
        let _ = writeln!(out, "# HELP tether_keepalive_rtt_seconds Keepalive ping round-trip time.");
        let _ = writeln!(out, "# TYPE tether_keepalive_rtt_seconds histogram");
        for (bound, bucket) in RTT_BUCKETS.iter().zip(&c.rtt_buckets) {
            let _ = writeln!(out, "tether_keepalive_rtt_seconds_bucket{{le=\"{bound}\"}} {}", load(bucket));
        }
        let _ = writeln!(out, "tether_keepalive_rtt_seconds_bucket{{le=\"+Inf\"}} {}", load(&c.rtt_count));
        let _ = writeln!(out, "tether_keepalive_rtt_seconds_sum {}", load(&c.rtt_sum_micros) as f64 / 1e6);
        let _ = writeln!(out, "tether_keepalive_rtt_seconds_count {}", load(&c.rtt_count));
        out
    }
}

/// One connection's share of the metrics: counted as open until it ends,
/// then closed with its code, exactly once, however it ends.
pub(crate) struct Tracked {
    pub(crate) metrics: Metrics,
    done: bool,
    last_rtt: Option<Duration>,
}

impl Tracked {
    pub(crate) fn new(metrics: Metrics) -> Tracked {
        metrics.opened();
        Tracked { metrics, done: false, last_rtt: None }
    }

    pub(crate) fn ended(&mut self, code: u16) {
        if !self.done {
            self.done = true;
            self.metrics.closed(code);
        }
    }

    /// Records a round trip if it is a new measurement.
    pub(crate) fn round_trip(&mut self, rtt: Option<Duration>) {
        if rtt.is_some() && rtt != self.last_rtt {
            self.last_rtt = rtt;
            if let Some(rtt) = rtt {
                self.metrics.round_trip(rtt);
            }
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Dropped before its end was seen: it ended without a close frame.
        self.ended(1006);
    }
}
