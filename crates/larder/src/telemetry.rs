//! Logs and traces for the server commands: log lines on stderr, human-readable or one JSON
//! object per line, each carrying the trace id of the request it belongs to; spans exported
//! over OTLP/gRPC when an endpoint is configured, and no exporter (and no span) otherwise.

use std::fmt;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use larder_proto::trace::{Sampling, TraceId};

/// Default share of requests without a traced caller that start a trace.
pub(crate) const DEFAULT_SAMPLE_RATIO: f64 = 1.0;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// One readable line per event (colours on a terminal).
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `[telemetry]`: logs and traces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TelemetryConfig {
    /// `human` or `json` (`--log-format`).
    pub(crate) log_format: LogFormat,
    /// OTLP/gRPC endpoint spans are exported to (`http://host:4317`); empty: no export, no
    /// spans. `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` set it too.
    pub(crate) otlp_endpoint: String,
    /// Share of requests without a traced caller that start a trace, 0.0 to 1.0
    /// (`OTEL_TRACES_SAMPLER_ARG`).
    pub(crate) sample_ratio: f64,
    /// Whether a request whose caller sent a `traceparent` follows the caller's decision
    /// (`OTEL_TRACES_SAMPLER=parentbased_*`); otherwise the ratio decides for it too.
    pub(crate) parent_based: bool,
    /// The exported `service.name` (`OTEL_SERVICE_NAME`); empty: `larder-cache`,
    /// `larder-api` or `larder` after the command.
    pub(crate) service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Human,
            otlp_endpoint: String::new(),
            sample_ratio: DEFAULT_SAMPLE_RATIO,
            parent_based: true,
            service_name: String::new(),
        }
    }
}

impl TelemetryConfig {
    /// Refuses a ratio outside 0–1.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            anyhow::bail!("sample_ratio must be between 0 and 1");
        }
        Ok(())
    }
}

/// The standard OpenTelemetry variables, as `[telemetry]` settings (`LARDER_TELEMETRY_*`
/// override them): `(setting, value)` pairs.
pub(crate) fn otel_env(
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<Vec<(&'static str, toml::Value)>> {
    let vars: std::collections::HashMap<String, String> = vars.collect();
    let mut settings = Vec::new();
    let endpoint = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .find_map(|name| vars.get(*name).filter(|v| !v.trim().is_empty()));
    if let Some(endpoint) = endpoint {
        settings.push(("otlp_endpoint", toml::Value::String(endpoint.trim().into())));
    }
    if let Some(name) = vars.get("OTEL_SERVICE_NAME").filter(|v| !v.is_empty()) {
        settings.push(("service_name", toml::Value::String(name.clone())));
    }
    let arg = vars.get("OTEL_TRACES_SAMPLER_ARG");
    let ratio = |arg: Option<&String>| -> anyhow::Result<f64> {
        arg.map_or(Ok(1.0), |a| {
            a.trim()
                .parse()
                .with_context(|| format!("OTEL_TRACES_SAMPLER_ARG {a:?} is not a number"))
        })
    };
    let sampler = match vars.get("OTEL_TRACES_SAMPLER").map(|s| s.trim()) {
        None | Some("") => None,
        Some("always_on") => Some((1.0, false)),
        Some("always_off") => Some((0.0, false)),
        Some("traceidratio") => Some((ratio(arg)?, false)),
        Some("parentbased_always_on") => Some((1.0, true)),
        Some("parentbased_always_off") => Some((0.0, true)),
        Some("parentbased_traceidratio") => Some((ratio(arg)?, true)),
        Some(other) => anyhow::bail!("OTEL_TRACES_SAMPLER {other:?} is not a sampler larder has"),
    };
    if let Some((ratio, parent_based)) = sampler {
        settings.push(("sample_ratio", toml::Value::Float(ratio)));
        settings.push(("parent_based", toml::Value::Boolean(parent_based)));
    }
    Ok(settings)
}

/// What [`start`] set up; dropping it exports the spans still buffered.
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("larder: exporting the last spans failed: {err}");
        }
    }
}

/// Starts logging (`RUST_LOG` picks the level, default `info`) and, if an OTLP endpoint is
/// configured, tracing. Call it inside the tokio runtime: the exporter's channel lives there.
pub(crate) fn start(config: &TelemetryConfig, service: &str) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = LineFormat {
        json: config.log_format == LogFormat::Json,
    };
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(!format.json && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .event_format(format)
        .with_filter(filter);
    let (provider, spans) = if config.otlp_endpoint.is_empty() {
        (None, None)
    } else {
        let provider = provider(config, service)?;
        // Larder's own spans and events; other crates' warnings become span events too.
        let targets = Targets::new()
            .with_default(LevelFilter::WARN)
            .with_target("larder", Level::INFO);
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("larder"))
            .with_filter(targets);
        (Some(provider), Some(layer))
    };
    let traced = spans.is_some();
    tracing_subscriber::registry()
        .with(spans)
        .with(logs)
        .try_init()
        .context("starting logging")?;
    if traced {
        larder_proto::trace::configure(Sampling {
            ratio: config.sample_ratio,
            parent_based: config.parent_based,
        });
        tracing::info!(
            endpoint = %config.otlp_endpoint,
            ratio = config.sample_ratio,
            parent_based = config.parent_based,
            "exporting traces over otlp"
        );
    }
    Ok(Telemetry { provider })
}

/// The tracer provider: batches of spans to the OTLP endpoint. Which requests are traced is
/// decided before their spans exist (`larder_proto::trace`), so the provider keeps every span
/// it gets, except those whose caller decided against tracing when sampling is parent-based.
fn provider(config: &TelemetryConfig, service: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.otlp_endpoint.clone())
        .build()
        .with_context(|| format!("building the OTLP exporter for {}", config.otlp_endpoint))?;
    let sampler = if config.parent_based {
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
    } else {
        Sampler::AlwaysOn
    };
    let name = if config.service_name.is_empty() {
        service.to_owned()
    } else {
        config.service_name.clone()
    };
    let resource = Resource::builder()
        .with_service_name(name)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build())
}

/// Log lines with the request's trace id: `human` (the time, the level, the spans with their
/// fields, the target, the message and fields, `trace_id=…`) or `json` (one object per line).
struct LineFormat {
    json: bool,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut time = String::with_capacity(32);
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let meta = event.metadata();
        let mut trace_id = None;
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                trace_id = trace_id.or_else(|| ext.get::<TraceId>().copied());
                let fields = ext
                    .get::<FormattedFields<N>>()
                    .map(|f| f.fields.clone())
                    .unwrap_or_default();
                spans.push((span.name(), fields));
            }
        }
        if self.json {
            let mut fields = JsonFields::default();
            event.record(&mut fields);
            let mut line = serde_json::Map::new();
            line.insert("timestamp".into(), time.into());
            line.insert("level".into(), meta.level().as_str().into());
            line.insert("target".into(), meta.target().into());
            if let Some(message) = fields.message.take() {
                line.insert("message".into(), message.into());
            }
            if !fields.fields.is_empty() {
                line.insert("fields".into(), fields.fields.into());
            }
            if let Some((name, _)) = spans.last() {
                line.insert("span".into(), (*name).into());
            }
            if let Some(id) = trace_id {
                line.insert("trace_id".into(), id.to_string().into());
            }
            let text = serde_json::Value::Object(line).to_string();
            return writeln!(writer, "{text}");
        }
        write!(writer, "{time} {:>5} ", meta.level())?;
        for (name, fields) in &spans {
            if fields.is_empty() {
                write!(writer, "{name}:")?;
            } else {
                write!(writer, "{name}{{{fields}}}:")?;
            }
        }
        if !spans.is_empty() {
            writer.write_char(' ')?;
        }
        write!(writer, "{}: ", meta.target())?;
        ctx.format_fields(writer.by_ref(), event)?;
        if let Some(id) = trace_id {
            write!(writer, " trace_id={id}")?;
        }
        writeln!(writer)
    }
}

/// An event's fields as JSON values, the message apart.
#[derive(Default)]
struct JsonFields {
    message: Option<String>,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl JsonFields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn the_standard_variables_become_settings() {
        let got = otel_env(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_SERVICE_NAME", "edge-cache"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
        ]))
        .unwrap();
        assert_eq!(
            got,
            vec![
                (
                    "otlp_endpoint",
                    toml::Value::String("http://collector:4317".into())
                ),
                ("service_name", toml::Value::String("edge-cache".into())),
                ("sample_ratio", toml::Value::Float(0.01)),
                ("parent_based", toml::Value::Boolean(true)),
            ]
        );
        let traces_first = otel_env(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4317"),
            ("OTEL_TRACES_SAMPLER", "always_off"),
        ]))
        .unwrap();
        assert_eq!(
            traces_first[0],
            ("otlp_endpoint", toml::Value::String("http://b:4317".into()))
        );
        assert_eq!(traces_first[1], ("sample_ratio", toml::Value::Float(0.0)));
        assert!(otel_env(vars(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")])).is_err());
        assert!(
            otel_env(vars(&[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "most")
            ]))
            .is_err()
        );
        assert!(otel_env(vars(&[("PATH", "/bin")])).unwrap().is_empty());
    }

    /// A writer into a shared buffer, for the log layer under test.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs `request` (a traced request's span with one line inside it, under a caller's
    /// `traceparent`) and one line outside any request, in `json` or human format.
    fn log_lines(json: bool) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .event_format(LineFormat { json }),
            );
        larder_proto::trace::configure(Sampling {
            ratio: 1.0,
            parent_based: true,
        });
        tracing::subscriber::with_default(subscriber, || {
            let mut headers = tonic::codegen::http::HeaderMap::new();
            let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            headers.insert("traceparent", parent.parse().unwrap());
            let span = larder_proto::trace::request(
                || larder_proto::trace::from_headers(&headers),
                || tracing::info_span!("http", route = "/v1/{collection}/{id}"),
            );
            span.in_scope(|| {
                let inner = tracing::info_span!("db");
                inner.in_scope(|| tracing::warn!(rows = 3_u64, ok = true, "slow query"));
            });
            tracing::info!("outside any request");
        });
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn log_lines_carry_the_trace_id_of_their_request() {
        let json = log_lines(true);
        let lines: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{json}");
        let inside = &lines[0];
        assert_eq!(inside["message"], "slow query");
        assert_eq!(inside["level"], "WARN");
        assert_eq!(inside["span"], "db");
        assert_eq!(inside["fields"]["rows"], 3);
        assert_eq!(inside["fields"]["ok"], true);
        assert_eq!(inside["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(inside["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["message"], "outside any request");
        assert!(lines[1].get("trace_id").is_none());

        let human = log_lines(false);
        let lines: Vec<&str> = human.lines().collect();
        assert_eq!(lines.len(), 2, "{human}");
        assert!(
            lines[0].contains("WARN http{route=\"/v1/{collection}/{id}\"}:db: ")
                && lines[0].contains("slow query rows=3 ok=true")
                && lines[0].ends_with(" trace_id=4bf92f3577b34da6a3ce929d0e0e4736"),
            "{human}"
        );
        assert!(!lines[1].contains("trace_id"), "{human}");
    }

    #[test]
    fn ratios_outside_zero_to_one_are_refused() {
        let mut config = TelemetryConfig::default();
        assert!(config.validate().is_ok());
        config.sample_ratio = 1.5;
        assert!(config.validate().is_err());
        config.sample_ratio = -0.1;
        assert!(config.validate().is_err());
    }
}
