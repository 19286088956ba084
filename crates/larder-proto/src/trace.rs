//! Request tracing shared by every wire: whether a request is traced (decided before its span
//! exists, so an untraced request costs one atomic load), W3C trace context (`traceparent`,
//! `tracestate`) read from and written to HTTP headers and gRPC metadata, and the trace id
//! log lines show.
//!
//! Nothing is traced until the binary calls [`configure`] (it does when OTLP export is on).
//! Then a request that arrives with a `traceparent` follows its caller's decision (parent-based
//! sampling) and one without starts a trace with the configured probability. A request that is
//! not traced gets no span at all, and neither does anything it does (origin loads, database
//! queries, calls to other nodes): [`child`] makes a span only inside a traced request.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId, TraceState,
};
use tonic::codegen::http::{HeaderMap, HeaderValue};
use tonic::metadata::{MetadataMap, MetadataValue};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header that carries the caller's trace and span ids and its sampling decision.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header that carries vendors' trace state.
pub const TRACESTATE: &str = "tracestate";

/// Whether requests are traced at all.
static ON: AtomicBool = AtomicBool::new(false);
/// Whether a request follows the sampling decision its `traceparent` carries.
static PARENT_BASED: AtomicBool = AtomicBool::new(true);
/// A request without a parent is traced when a random `u64` falls below this.
static THRESHOLD: AtomicU64 = AtomicU64::new(0);

/// How requests are sampled once tracing is on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// The share of requests without a traced caller that start a trace, 0.0 to 1.0.
    pub ratio: f64,
    /// Whether a request with a `traceparent` follows its caller's decision (otherwise the
    /// ratio decides for it too).
    pub parent_based: bool,
}

/// Turns tracing on with `sampling`, for the whole process.
pub fn configure(sampling: Sampling) {
    let ratio = sampling.ratio.clamp(0.0, 1.0);
    // u64::MAX as f64 rounds up to 2^64, which the cast saturates back to u64::MAX.
    let threshold = if ratio >= 1.0 {
        u64::MAX
    } else {
        (ratio * u64::MAX as f64) as u64
    };
    THRESHOLD.store(threshold, Relaxed);
    PARENT_BASED.store(sampling.parent_based, Relaxed);
    ON.store(true, Relaxed);
}

/// Turns tracing off again (for tests).
pub fn disable() {
    ON.store(false, Relaxed);
}

/// Whether tracing is on: anything else here is worth calling only then.
#[inline]
pub fn on() -> bool {
    ON.load(Relaxed)
}

thread_local! {
    /// xorshift64* state, seeded per thread from the standard library's random keys.
    static RNG: Cell<u64> = Cell::new(RandomState::new().hash_one(0u64) | 1);
}

fn coin() -> bool {
    let threshold = THRESHOLD.load(Relaxed);
    if threshold == u64::MAX {
        return true;
    }
    let draw = RNG.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    });
    draw < threshold
}

/// The span of one incoming request, or [`Span::none`] if it is not traced.
///
/// `parent` reads the caller's trace context ([`from_headers`], [`from_metadata`]); it is
/// called only while tracing is on, and `make` only if the request is traced. A traced request
/// whose caller sent no trace context starts a new trace. The span's trace id is kept where
/// log lines find it ([`TraceId`]).
pub fn request(parent: impl FnOnce() -> Option<SpanContext>, make: impl FnOnce() -> Span) -> Span {
    if !on() {
        return Span::none();
    }
    let parent = parent();
    let traced = match &parent {
        Some(remote) if PARENT_BASED.load(Relaxed) => {
            // An unsampled caller still gets a span here, so that its decision travels on to
            // the nodes this request calls; the exporter's sampler drops it.
            let _ = remote;
            true
        }
        _ => coin(),
    };
    if !traced {
        return Span::none();
    }
    let span = make();
    if span.is_disabled() {
        return span;
    }
    if let Some(remote) = parent {
        let cx = opentelemetry::Context::new().with_remote_span_context(remote);
        let _ = span.set_parent(cx);
    }
    let cx = span.context();
    let context = cx.span().span_context().clone();
    if context.is_valid() {
        keep_trace_id(&span, TraceId(context.trace_id().to_bytes()));
    }
    span
}

/// A span for work inside a traced request (an origin load, a database query, a call to a
/// node): `make` is called only when the current span is one, else [`Span::none`].
pub fn child(make: impl FnOnce() -> Span) -> Span {
    if !on() || Span::current().is_none() {
        return Span::none();
    }
    make()
}

/// A span for work done for several requests at once (reads sent to another node as one
/// call): the child of the first traced span in `requests`, linked to every other traced one,
/// so each request's trace leads to the shared work. `make` is called only when one of them
/// is traced; otherwise [`Span::none`].
pub fn batch<'a>(
    requests: impl IntoIterator<Item = &'a Span>,
    make: impl FnOnce() -> Span,
) -> Span {
    if !on() {
        return Span::none();
    }
    let mut traced = requests.into_iter().filter(|span| !span.is_none());
    let Some(first) = traced.next() else {
        return Span::none();
    };
    let span = first.in_scope(make);
    if span.is_none() {
        return span;
    }
    for other in traced {
        let context = other.context().span().span_context().clone();
        if context.is_valid() {
            span.add_link(context);
        }
    }
    span
}

/// The current span when tracing is on and it is a request's (or its child's), to be carried
/// to work done later elsewhere ([`batch`]); [`Span::none`] otherwise, at the cost of one
/// atomic load.
pub fn carried() -> Span {
    if !on() {
        return Span::none();
    }
    Span::current()
}

/// The trace id of a request's span, kept in the span's extensions for the log formatter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", u128::from_be_bytes(self.0))
    }
}

fn keep_trace_id(span: &Span, id: TraceId) {
    use tracing_subscriber::registry::{LookupSpan, Registry};
    span.with_subscriber(|(span_id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<Registry>()
            && let Some(data) = registry.span(span_id)
        {
            data.extensions_mut().replace(id);
        }
    });
}

/// Reads `traceparent` (and `tracestate`) through `get`; `None` when absent or malformed.
pub fn extract<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Option<SpanContext> {
    let parent = get(TRACEPARENT)?;
    let (trace_id, span_id, flags) = parse_traceparent(parent)?;
    let state = get(TRACESTATE)
        .and_then(parse_tracestate)
        .unwrap_or_default();
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// Parses a `tracestate` value: comma-separated `key=value` members, each checked as the W3C
/// specification says (keys and values by `TraceState::from_key_value`, which lets an empty
/// key through, so that is checked here); `None` if any member is malformed.
fn parse_tracestate(value: &[u8]) -> Option<TraceState> {
    let value = std::str::from_utf8(value).ok()?;
    let members = value
        .split(',')
        .map(str::trim)
        .filter(|member| !member.is_empty())
        .map(|member| member.split_once('='))
        .map(|pair| pair.filter(|(key, value)| !key.is_empty() && !value.is_empty()))
        .collect::<Option<Vec<_>>>()?;
    if members.len() > 32 {
        return None;
    }
    TraceState::from_key_value(members).ok()
}

/// The caller's trace context in HTTP request headers.
pub fn from_headers(headers: &HeaderMap) -> Option<SpanContext> {
    extract(|name| headers.get(name).map(HeaderValue::as_bytes))
}

/// The caller's trace context in gRPC request metadata.
pub fn from_metadata(metadata: &MetadataMap) -> Option<SpanContext> {
    extract(|name| metadata.get(name).map(MetadataValue::as_bytes))
}

/// Parses a `traceparent` value (W3C Trace Context, version 00, and later versions by their
/// first four fields). All-zero ids and version `ff` are invalid, as the specification says.
fn parse_traceparent(value: &[u8]) -> Option<(OtelTraceId, SpanId, TraceFlags)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let bytes = value.as_bytes();
    if bytes.len() < 55 || (bytes.len() > 55 && bytes[55] != b'-') {
        return None;
    }
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let (version, trace, span, flags) =
        (&value[..2], &value[3..35], &value[36..52], &value[53..55]);
    let dashes = [bytes[2], bytes[35], bytes[52]] == [b'-'; 3];
    if !dashes || ![version, trace, span, flags].into_iter().all(lower_hex) {
        return None;
    }
    if version == "ff" || (version == "00" && bytes.len() != 55) {
        return None;
    }
    let trace = u128::from_str_radix(trace, 16).ok().filter(|&t| t != 0)?;
    let span = u64::from_str_radix(span, 16).ok().filter(|&s| s != 0)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((
        OtelTraceId::from(trace),
        SpanId::from(span),
        TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
    ))
}

/// The current span's trace context as `(traceparent, tracestate)`, for an outgoing request;
/// `None` outside a traced request.
pub fn outgoing() -> Option<(String, Option<String>)> {
    if !on() {
        return None;
    }
    let span = Span::current();
    if span.is_none() {
        return None;
    }
    let cx = span.context();
    let context = cx.span().span_context().clone();
    if !context.is_valid() {
        return None;
    }
    let parent = format!(
        "00-{:032x}-{:016x}-{:02x}",
        u128::from_be_bytes(context.trace_id().to_bytes()),
        u64::from_be_bytes(context.span_id().to_bytes()),
        context.trace_flags().to_u8()
    );
    let state = context.trace_state().header();
    Some((parent, (!state.is_empty()).then_some(state)))
}

/// Adds the current span's trace context to gRPC request metadata.
pub fn inject_metadata(metadata: &mut MetadataMap) {
    if let Some((parent, state)) = outgoing() {
        if let Ok(value) = parent.parse() {
            metadata.insert(TRACEPARENT, value);
        }
        if let Some(Ok(value)) = state.map(|s| s.parse()) {
            metadata.insert(TRACESTATE, value);
        }
    }
}

/// Adds the current span's trace context to HTTP request headers.
pub fn inject_headers(headers: &mut HeaderMap) {
    if let Some((parent, state)) = outgoing() {
        if let Ok(value) = HeaderValue::from_str(&parent) {
            headers.insert(TRACEPARENT, value);
        }
        if let Some(Ok(value)) = state.map(|s| HeaderValue::from_str(&s)) {
            headers.insert(TRACESTATE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read() {
        let (trace, span, flags) = parse_traceparent(GOOD.as_bytes()).unwrap();
        assert_eq!(
            trace,
            OtelTraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736_u128)
        );
        assert_eq!(span, SpanId::from(0x00f067aa0ba902b7_u64));
        assert!(flags.is_sampled());
        let unsampled = GOOD.replace("-01", "-00");
        let (_, _, flags) = parse_traceparent(unsampled.as_bytes()).unwrap();
        assert!(!flags.is_sampled());
        // A later version may add fields after a dash.
        let future = GOOD.replacen("00", "01", 1) + "-extra";
        assert!(parse_traceparent(future.as_bytes()).is_some());
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\u{e9}",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad:?}");
        }
        assert!(parse_traceparent(&[0xff, 0xfe, 0x00]).is_none());
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static("nonsense"));
        assert!(from_headers(&headers).is_none());
    }

    #[test]
    fn tracestate_travels_with_the_parent() {
        let mut metadata = MetadataMap::new();
        metadata.insert(TRACEPARENT, GOOD.parse().unwrap());
        metadata.insert(TRACESTATE, "vendor=abc,other=1".parse().unwrap());
        let context = from_metadata(&metadata).unwrap();
        assert!(context.is_remote());
        assert_eq!(context.trace_state().get("vendor"), Some("abc"));
        for bad in ["=not a state", "vendor", "Vendor=1", "a=1,b", "k=v=w"] {
            metadata.insert(TRACESTATE, bad.parse().unwrap());
            let context = from_metadata(&metadata).unwrap();
            assert_eq!(context.trace_state().header(), "", "{bad:?}");
        }
    }

    #[test]
    fn trace_ids_print_as_32_hex_digits() {
        let id = TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736_u128.to_be_bytes());
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let small = TraceId(1_u128.to_be_bytes());
        assert_eq!(small.to_string(), "00000000000000000000000000000001");
    }

    #[test]
    fn roots_are_sampled_at_the_ratio() {
        // `coin` reads only the threshold, which no other test sets.
        THRESHOLD.store((0.25 * u64::MAX as f64) as u64, Relaxed);
        let taken = (0..100_000).filter(|_| coin()).count();
        assert!((23_500..26_500).contains(&taken), "{taken}");
        THRESHOLD.store(0, Relaxed);
        assert!(!(0..10_000).any(|_| coin()));
        THRESHOLD.store(u64::MAX, Relaxed);
        assert!((0..10_000).all(|_| coin()));
        THRESHOLD.store(0, Relaxed);
    }

    #[test]
    fn nothing_is_traced_while_tracing_is_off() {
        // The only test in this crate that touches the switch; `on()` starts false.
        assert!(!on());
        let mut made = false;
        let span = request(
            || panic!("the parent is not read while tracing is off"),
            || {
                made = true;
                Span::none()
            },
        );
        assert!(span.is_none() && !made);
        assert!(outgoing().is_none());
        assert!(child(|| panic!("no child span outside a traced request")).is_none());
    }
}
