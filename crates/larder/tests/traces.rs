//! Traces across processes: `larder cache` and `larder api --cache-nodes` started as separate
//! processes that export spans over OTLP/gRPC to a small receiver in this test. One `GET`
//! of a document the node does not hold must give spans from both processes in one trace: the
//! gateway's request span, its call to the node, the node's gRPC span under that call, and
//! the database query under the request. A caller's `traceparent` is followed, a malformed
//! one ignored, and the gateway's JSON log lines carry the trace id. A read a cluster node
//! forwards to the key's owner stays in its trace through the forwarding call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

mod support;

use support::{LARDER, Process, free_port};

/// One exported span: the process's `service.name` and the span's ids, name and attributes.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: HashMap<String, String>,
}

/// The OTLP receiver: keeps every span it is sent.
#[derive(Debug, Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Got>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref()))
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                kept.push(Got {
                    service: service.clone(),
                    trace: hex(&span.trace_id),
                    id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    name: span.name,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                        .collect(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Starts serving on a loopback port of `runtime`; its `http://` endpoint.
    fn start(&self, runtime: &tokio::runtime::Runtime) -> String {
        let incoming = runtime
            .block_on(async {
                tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], 0).into())
            })
            .unwrap();
        let addr = incoming.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        format!("http://{addr}")
    }

    /// Waits up to 20 s until `done` holds for the spans received so far; those spans.
    fn wait_for(&self, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "{what}; got {spans:#?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `larder args…` exporting to `endpoint`, logging to `log`; see
/// [`support::Process::spawn`].
fn start(args: &[&str], count: usize, endpoint: &str, log: &Path) -> Process {
    let mut command = Command::new(LARDER);
    command
        .args(args)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "info,larder_api=debug")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_TRACES_SAMPLER")
        .stderr(std::fs::File::create(log).unwrap());
    Process::spawn(command, count)
}

/// One HTTP/1.1 exchange with extra header lines: (status, body).
fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\
         Content-Type: application/vnd.api+json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

/// `FLUSHALL` over RESP, so the next read misses on the node.
fn flush_node(resp: &str) {
    let mut stream = TcpStream::connect(resp).unwrap();
    stream
        .write_all(b"*1\r\n$8\r\nFLUSHALL\r\n*1\r\n$4\r\nQUIT\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("+OK"), "{reply}");
}

/// Whether `span` is `ancestor` or below it, following parent ids through `spans`.
fn descends(spans: &[Got], span: &Got, ancestor: &Got) -> bool {
    let mut at = span;
    for _ in 0..16 {
        if at.id == ancestor.id {
            return true;
        }
        match spans.iter().find(|s| s.id == at.parent) {
            Some(parent) => at = parent,
            None => return false,
        }
    }
    false
}

fn find<'a>(spans: &'a [Got], service: &str, trace: &str, name: &str) -> Option<&'a Got> {
    spans
        .iter()
        .find(|s| s.service == service && s.trace == trace && s.name == name)
}

#[test]
fn one_get_is_one_trace_across_the_gateway_the_node_and_the_database() {
    let dir = std::env::temp_dir().join(format!("larder-traces-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("api.toml");
    std::fs::write(&config, "[[api.collections]]\nname = \"books\"\n").unwrap();
    let database = format!("sqlite://{}?mode=rwc", dir.join("larder.db").display());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let receiver = Receiver::default();
    let endpoint = receiver.start(&runtime);

    let node_args = [
        "cache",
        "--resp-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ];
    let node = start(&node_args, 3, &endpoint, &dir.join("node.log"));
    let (node_resp, node_grpc) = (node.addrs[0].clone(), node.addrs[1].clone());
    let api_log = dir.join("api.log");
    let api_args = [
        "api",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--database",
        &database,
        "--cache-nodes",
        &node_grpc,
        "--log-format",
        "json",
    ];
    let gateway = start(&api_args, 1, &endpoint, &api_log);
    let api = gateway.addrs[0].clone();

    let body = r#"{"data":{"type":"books","attributes":{"title":"traced"}}}"#;
    let (status, reply) = http(&api, "POST", "/v1/books", "", body);
    assert_eq!(status, 201, "{reply}");
    let at = reply.find(r#""id":""#).unwrap() + 6;
    let id = reply[at..].split('"').next().unwrap().to_owned();
    flush_node(&node_resp);

    // The GET: no traceparent, so the gateway starts the trace.
    let (status, reply) = http(&api, "GET", &format!("/v1/books/{id}"), "", "");
    assert_eq!(status, 200, "{reply}");
    let route = "GET /v1/{collection}/{id}";
    let is_get = |s: &Got| {
        s.service == "larder-api"
            && s.name == route
            && s.attributes.get("url.path") == Some(&format!("/v1/books/{id}"))
    };
    let spans = receiver.wait_for("the GET's spans from both processes", |spans| {
        spans.iter().filter(|s| is_get(s)).any(|get| {
            find(
                spans,
                "larder-cache",
                &get.trace,
                "larder.cache.v1.Cache/Get",
            )
            .is_some()
                && find(
                    spans,
                    "larder-cache",
                    &get.trace,
                    "larder.cache.v1.Cache/Set",
                )
                .is_some()
                && find(spans, "larder-api", &get.trace, "SELECT larder_documents").is_some()
        })
    });
    let get = spans.iter().find(|s| is_get(s)).unwrap();
    assert_eq!(
        get.parent, "",
        "a request without traceparent starts the trace"
    );
    assert_eq!(get.attributes["http.response.status_code"], "200");
    let trace = &get.trace;
    // The gateway's call to the node, and the node's span under it.
    let call = spans
        .iter()
        .find(|s| {
            s.service == "larder-api" && s.trace == *trace && s.name == "larder.cache.v1.Cache/Get"
        })
        .expect("the gateway's call span");
    assert!(descends(&spans, call, get));
    let served = find(&spans, "larder-cache", trace, "larder.cache.v1.Cache/Get").unwrap();
    assert_eq!(
        served.parent, call.id,
        "the node's span is the call's child"
    );
    assert_eq!(served.attributes["rpc.grpc.status_code"], "0");
    // The database query and the fill, under the request.
    let query = find(&spans, "larder-api", trace, "SELECT larder_documents").unwrap();
    assert!(descends(&spans, query, get), "{query:?}");
    assert_eq!(query.attributes["db.system.name"], "sqlite");
    let fill = find(&spans, "larder-cache", trace, "larder.cache.v1.Cache/Set").unwrap();
    let fill_call = spans.iter().find(|s| s.id == fill.parent).unwrap();
    assert!(descends(&spans, fill_call, get));
    // The RESP batch that flushed the node was a trace of its own.
    let flush = spans
        .iter()
        .find(|s| {
            s.service == "larder-cache"
                && s.attributes
                    .get("db.system.name")
                    .is_some_and(|v| v == "redis")
        })
        .expect("the RESP batch's span");
    assert_ne!(flush.trace, *trace);
    assert_eq!(
        flush.attributes["db.operation.batch.size"], "2",
        "FLUSHALL and QUIT"
    );

    // A caller's traceparent is followed; a malformed one is ignored.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let header = format!("traceparent: 00-{caller_trace}-00f067aa0ba902b7-01\r\n");
    let (status, _) = http(&api, "GET", &format!("/v1/books/{id}"), &header, "");
    assert_eq!(status, 200);
    // Each process exports on its own schedule: wait for both spans.
    let spans = receiver.wait_for("the caller's trace", |spans| {
        find(
            spans,
            "larder-cache",
            caller_trace,
            "larder.cache.v1.Cache/Get",
        )
        .is_some()
            && find(spans, "larder-api", caller_trace, route).is_some()
    });
    let child = find(&spans, "larder-api", caller_trace, route).unwrap();
    assert_eq!(child.parent, "00f067aa0ba902b7");
    let before = spans.len();
    let bad = "traceparent: 00-not-a-trace-01\r\n";
    let (status, _) = http(&api, "GET", &format!("/v1/books/{id}"), bad, "");
    assert_eq!(status, 200);
    let spans = receiver.wait_for("a new trace after a malformed traceparent", |spans| {
        spans[before..]
            .iter()
            .any(|s| is_get(s) && s.parent.is_empty())
    });
    assert!(spans[before..].iter().all(|s| s.trace != caller_trace));

    // Every JSON log line of a request carries its trace id.
    drop(gateway);
    let log = std::fs::read_to_string(&api_log).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let answered: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "request answered")
        .collect();
    assert!(answered.len() >= 4, "{log}");
    for line in &answered {
        assert!(
            line["trace_id"].as_str().is_some_and(|t| t.len() == 32),
            "{line}"
        );
        assert_eq!(line["level"], "DEBUG");
        assert_eq!(line["span"], "http");
    }
    assert!(answered.iter().any(|l| l["trace_id"] == trace.as_str()));
    assert!(answered.iter().any(|l| l["trace_id"] == caller_trace));
    drop(node);
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every line a RESP server answers to `words` before `QUIT` closes the connection.
fn resp(addr: &str, words: &[&str]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut command = format!("*{}\r\n", words.len());
    for word in words {
        command.push_str(&format!("${}\r\n{word}\r\n", word.len()));
    }
    command.push_str("*1\r\n$4\r\nQUIT\r\n");
    stream.write_all(command.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn a_read_forwarded_to_the_owner_stays_in_the_callers_trace() {
    let dir = std::env::temp_dir().join(format!("larder-traces-fwd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let receiver = Receiver::default();
    let endpoint = receiver.start(&runtime);

    let gossip = [free_port(), free_port()];
    let seed = format!("127.0.0.1:{}", gossip[0]);
    let nodes: Vec<Process> = gossip
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let (id, cluster) = (format!("node-{i}"), format!("127.0.0.1:{port}"));
            let args = [
                "cache",
                "--node-id",
                &id,
                "--resp-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
                "--cluster-addr",
                &cluster,
                "--seeds",
                &seed,
            ];
            start(&args, 3, &endpoint, &dir.join(format!("{id}.log")))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    // A key the first node sends to the second once both agree on the table.
    let key = loop {
        let both = nodes.iter().all(|node| {
            let info = resp(&node.addrs[0], &["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:2")
        });
        let moved = (0..64)
            .map(|i| format!("key:{i}"))
            .find(|key| resp(&nodes[0].addrs[0], &["GET", key]).starts_with("-MOVED"));
        if both && let Some(key) = moved {
            break key;
        }
        assert!(
            Instant::now() < deadline,
            "the two nodes never formed a cluster"
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let grpc = format!("http://{}", nodes[0].addrs[1]);
    runtime.block_on(async {
        let mut client = larder_proto::grpc::cache::v1::cache_client::CacheClient::connect(grpc)
            .await
            .unwrap();
        let mut request = tonic::Request::new(larder_proto::grpc::cache::v1::GetRequest {
            key: key.clone().into_bytes().into(),
            lease: false,
            track: 0,
        });
        request.metadata_mut().insert(
            "traceparent",
            format!("00-{caller_trace}-b7ad6b7169203331-01")
                .parse()
                .unwrap(),
        );
        let reply = client.get(request).await.unwrap().into_inner();
        assert!(reply.entry.is_none(), "nothing was stored under {key}");
    });

    let get_each = "larder.cache.v1.Cache/GetEach";
    let spans = receiver.wait_for("the forwarded read's spans", |spans| {
        let mut named = spans
            .iter()
            .filter(|s| s.trace == caller_trace && s.name == get_each);
        named.next().is_some() && named.next().is_some()
    });
    let get = find(
        &spans,
        "larder-cache",
        caller_trace,
        "larder.cache.v1.Cache/Get",
    )
    .expect("the first node's span");
    assert_eq!(
        get.parent, "b7ad6b7169203331",
        "the caller's span is its parent"
    );
    let call = spans
        .iter()
        .find(|s| s.trace == caller_trace && s.name == get_each && s.parent == get.id)
        .expect("the forwarding call, under the read");
    assert_eq!(call.attributes["larder.reads"], "1");
    assert_eq!(call.attributes["server.address"], nodes[1].addrs[1]);
    let served = spans
        .iter()
        .find(|s| s.trace == caller_trace && s.name == get_each && s.parent == call.id)
        .expect("the owner's span, under the forwarding call");
    assert_eq!(served.attributes["rpc.grpc.status_code"], "0");
    drop(nodes);
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
}
