//! The gateway's metrics, rendered as Prometheus text at `/metrics`: requests by route
//! template, method and status; a latency histogram; the cache breakers' states.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use larder_proto::metrics::Histogram;
use parking_lot::Mutex;

/// Route template, method, status and count of one row of `larder_api_requests_total`.
type Row = (Box<str>, Box<str>, u16, u64);

/// A duration in nanoseconds, as the histogram takes it.
pub(crate) fn nanos(elapsed: std::time::Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// Request counts and latencies.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// `(route, method, status, count)`; a handful of rows, scanned without allocating.
    requests: Mutex<Vec<Row>>,
    latency: Histogram,
    /// `GET /v1/{collection}/{id}` answered 200, the commonest request: counted without the
    /// rows' lock.
    read_hits: AtomicU64,
    /// Connections closed (or bodies refused) because the client sent or took nothing for
    /// `client_timeout_ms`.
    client_timeouts: AtomicU64,
    /// TLS handshakes that failed (no common protocol, a client certificate refused, …).
    tls_failures: AtomicU64,
    /// Change feed streams open now.
    feed_subscribers: AtomicU64,
    /// Change feed events handed to the streams' connections.
    feed_events: AtomicU64,
}

/// Counts an open change feed stream until dropped.
pub(crate) struct FeedSubscriber<'a>(&'a Metrics);

impl Drop for FeedSubscriber<'_> {
    fn drop(&mut self) {
        self.0.feed_subscribers.fetch_sub(1, Relaxed);
    }
}

/// The label of a method: methods are the client's choice, so extension methods (and a
/// request whose method could not be read) share one row, `OTHER`.
pub(crate) fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "OTHER",
    }
}

/// The route label of requests refused before the router saw them (hyper's parse errors).
pub(crate) const UNROUTED: &str = "unrouted";

/// The row [`Metrics::read_hits`] counts.
const READ_HIT: (&str, &str, u16) = ("/v1/{collection}/{id}", "GET", 200);

impl Metrics {
    /// Counts one request.
    pub(crate) fn record(&self, route: &str, method: &str, status: u16, ns: u64) {
        if (route, method, status) == READ_HIT {
            self.read_hits.fetch_add(1, Relaxed);
        } else {
            self.count(route, method, status);
        }
        self.observe(ns);
    }

    /// Counts a request refused before the router saw it (hyper could not parse it): counted by
    /// status, but kept out of the latency histogram, whose answers it did not wait for.
    pub(crate) fn record_refusal(&self, method: &str, status: u16) {
        self.count(UNROUTED, method, status);
    }

    fn count(&self, route: &str, method: &str, status: u16) {
        let method = method_label(method);
        {
            let mut requests = self.requests.lock();
            let row = requests
                .iter_mut()
                .find(|(r, m, s, _)| *s == status && **r == *route && **m == *method);
            match row {
                Some(row) => row.3 += 1,
                None => requests.push((route.into(), method.into(), status, 1)),
            }
        }
    }

    /// Counts a connection closed for a client's silence.
    pub(crate) fn record_client_timeout(&self) {
        self.client_timeouts.fetch_add(1, Relaxed);
    }

    /// Counts an open change feed stream while the guard lives.
    pub(crate) fn feed_subscriber(&self) -> FeedSubscriber<'_> {
        self.feed_subscribers.fetch_add(1, Relaxed);
        FeedSubscriber(self)
    }

    /// Counts `n` change feed events sent to a stream.
    pub(crate) fn feed_delivered(&self, n: u64) {
        self.feed_events.fetch_add(n, Relaxed);
    }

    /// Counts a failed TLS handshake.
    pub(crate) fn record_tls_failure(&self) {
        self.tls_failures.fetch_add(1, Relaxed);
    }

    /// Adds a request's latency to the histogram.
    fn observe(&self, ns: u64) {
        self.latency.observe(ns, 1);
    }

    /// Prometheus text; `breakers` are `(target, state)` pairs, `inline` the database's
    /// inline SQLite reads `(served, handed_on)` if it has them.
    pub(crate) fn render(&self, breakers: &[(String, u8)], inline: Option<(u64, u64)>) -> String {
        let mut out = String::with_capacity(4096);
        let name = "larder_api_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests by route, method and status.\n# TYPE {name} counter"
        );
        let mut rows: Vec<_> = self
            .requests
            .lock()
            .iter()
            .map(|(r, m, s, n)| ((r.clone(), m.clone(), *s), *n))
            .collect();
        let read_hits = self.read_hits.load(Relaxed);
        if read_hits > 0 {
            let (route, method, status) = READ_HIT;
            rows.push(((route.into(), method.into(), status), read_hits));
        }
        rows.sort();
        for ((route, method, status), n) in rows {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "{name}{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        let name = "larder_api_tls_handshake_failures_total";
        let _ = writeln!(
            out,
            "# HELP {name} TLS handshakes that failed (client certificate refused, no common \
             protocol, not TLS at all).\n# TYPE {name} counter\n{name} {}",
            self.tls_failures.load(Relaxed)
        );
        let name = "larder_api_client_timeouts_total";
        let _ = writeln!(
            out,
            "# HELP {name} Connections closed because the client sent or took nothing within \
             client_timeout_ms (idle keep-alive connections included).\n# TYPE {name} counter\n\
             {name} {}",
            self.client_timeouts.load(Relaxed)
        );
        let name = "larder_api_feed_subscribers";
        let _ = writeln!(
            out,
            "# HELP {name} Change feed streams open (GET /v1/{{collection}}/changes).\n\
             # TYPE {name} gauge\n{name} {}",
            self.feed_subscribers.load(Relaxed)
        );
        let name = "larder_api_feed_events_total";
        let _ = writeln!(
            out,
            "# HELP {name} Change feed events sent to streams (one per stream an event reaches).\n\
             # TYPE {name} counter\n{name} {}",
            self.feed_events.load(Relaxed)
        );
        let name = "larder_api_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from a request's arrival to its response.\n# TYPE {name} histogram"
        );
        self.latency.render(&mut out, name, "");
        if let Some((served, handed_on)) = inline {
            let name = "larder_api_sqlite_inline_reads_total";
            let _ = writeln!(
                out,
                "# HELP {name} SQLite reads of one document run on the requesting thread \
                 (served), or handed to sqlx because every inline connection was busy or the \
                 read failed (handed_on).\n# TYPE {name} counter\n\
                 {name}{{result=\"served\"}} {served}\n{name}{{result=\"handed_on\"}} {handed_on}"
            );
        }
        let name = "larder_breaker_state";
        let _ = writeln!(
            out,
            "# HELP {name} Circuit breakers: 0 closed, 1 open, 2 half-open.\n# TYPE {name} gauge"
        );
        for (target, state) in breakers {
            let _ = writeln!(out, "{name}{{target=\"{target}\"}} {state}");
        }
        larder_proto::metrics::process::render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_latency_render() {
        let m = Metrics::default();
        m.record("/v1/{collection}/{id}", "GET", 200, 200_000);
        m.record("/v1/{collection}/{id}", "GET", 200, 200_000);
        m.record("/v1/{collection}", "POST", 201, 3_000_000);
        m.record("/v1/{collection}", "BREW", 404, 100);
        m.record_refusal("POST", 413);
        let text = m.render(&[("cache:a".into(), 1)], Some((5, 2)));
        assert!(
            text.contains("larder_api_sqlite_inline_reads_total{result=\"handed_on\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("route=\"unrouted\",method=\"POST\",status=\"413\"} 1"),
            "{text}"
        );
        assert!(text.contains("larder_api_requests_total{route=\"/v1/{collection}/{id}\",method=\"GET\",status=\"200\"} 2"), "{text}");
        assert!(
            text.contains("method=\"OTHER\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("larder_api_tls_handshake_failures_total 0"),
            "{text}"
        );
        assert!(text.contains("larder_api_request_duration_seconds_count 4"));
        assert!(text.contains("larder_api_request_duration_seconds_bucket{le=\"0.00025\"} 3"));
        assert!(text.contains("larder_breaker_state{target=\"cache:a\"} 1"));
        let open = m.feed_subscriber();
        m.feed_delivered(3);
        let text = m.render(&[], None);
        assert!(text.contains("larder_api_feed_subscribers 1\n"), "{text}");
        assert!(text.contains("larder_api_feed_events_total 3\n"), "{text}");
        drop(open);
        assert!(
            m.render(&[], None)
                .contains("larder_api_feed_subscribers 0\n")
        );
    }
}
