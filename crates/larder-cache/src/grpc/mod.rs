//! The gRPC service `larder.cache.v1.Cache` over the node core, with the bearer-token check,
//! `larder.cache.v1.Cluster`, `grpc.health.v1.Health` and server reflection (v1 and v1alpha).
//! In a cluster, a request for a key another node owns is forwarded to it once ([`forward`]).

mod each;
mod forward;
mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder_proto::ErrorCode;
use larder_proto::grpc::cache::v1 as pb;
use larder_store::{CasOutcome, EntryRef, Expiry, SetMode, SetOptions};
use pb::cache_server::{Cache, CacheServer};
use pb::cluster_server::ClusterServer;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::cluster::service::ClusterService;
use crate::node::Node;
use crate::node::error::OpError;
use crate::node::read::Read;
use crate::node::write::SetResult;
use crate::origin::Served;

/// gRPC method names, in the order the service counts them.
pub(crate) const METHODS: [&str; 12] = [
    "Get",
    "GetMany",
    "Set",
    "SetMany",
    "Delete",
    "Expire",
    "Incr",
    "CompareAndSet",
    "Stats",
    "Invalidate",
    "GetEach",
    "Watch",
];

/// A connection to another node's `Cache` service.
type Client = pb::cache_client::CacheClient<tonic::transport::Channel>;

/// The `Cache` service of one node.
#[derive(Debug, Clone)]
pub(crate) struct CacheService {
    node: Arc<Node>,
}

/// Every gRPC service the node serves, ready for a tonic server: the health service already
/// reports `SERVING`, so it does from the first call.
pub(crate) async fn routes(node: Arc<Node>) -> Result<Routes, tonic_reflection::server::Error> {
    let token = node.config.token.clone();
    let limit = node.max_request;
    let cluster = ClusterServer::new(ClusterService::new(node.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let server = CacheServer::new(CacheService { node })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    // Without a token there is nothing to check, so calls skip the interceptor altogether.
    let mut routes = if token.is_empty() {
        Routes::new(server).add_service(cluster)
    } else {
        let check = move |request: Request<()>| authorize(&token, &request).map(|()| request);
        Routes::new(InterceptedService::new(server, check.clone()))
            .add_service(InterceptedService::new(cluster, check))
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<CacheServer<CacheService>>().await;
    let v1 = reflection("grpc.reflection.v1.ServerReflection").build_v1()?;
    let v1alpha = reflection("grpc.reflection.v1alpha.ServerReflection").build_v1alpha()?;
    routes = routes
        .add_service(health)
        .add_service(v1)
        .add_service(v1alpha);
    Ok(routes)
}

/// A reflection builder that lists the services this node serves; the descriptor set also
/// holds `larder.cache.v1.Origin`, which applications serve, not the node.
fn reflection(itself: &str) -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(larder_proto::grpc::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("larder.cache.v1.Cache")
        .with_service_name("larder.cache.v1.Cluster")
        .with_service_name("grpc.health.v1.Health")
        .with_service_name(itself)
}

/// The span of one call (`Span::none()` unless it is traced, see `larder_proto::trace`),
/// child of the caller's span when its metadata carries a `traceparent`.
pub(crate) fn span(request: &tonic::codegen::http::Request<()>) -> tracing::Span {
    larder_proto::trace::request(
        || larder_proto::trace::from_headers(request.headers()),
        || {
            let path = request.uri().path().trim_start_matches('/');
            let (service, method) = path.split_once('/').unwrap_or((path, ""));
            tracing::info_span!(
                "grpc",
                otel.name = path,
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
                rpc.grpc.status_code = tracing::field::Empty,
            )
        },
    )
}

/// Checks `authorization: Bearer <token>` when a token is configured ([`larder_util::auth`]).
fn authorize<T>(token: &str, request: &Request<T>) -> Result<(), Status> {
    let given = request.metadata().get("authorization");
    if larder_util::auth::authorized(token, given.map(|v| v.as_bytes())) {
        Ok(())
    } else {
        Err(ErrorCode::Unauthenticated.status("missing or wrong bearer token"))
    }
}

impl CacheService {
    /// Counts a call of method `method` (an index into [`METHODS`]) and passes it on.
    fn done<T>(
        &self,
        method: usize,
        started: Instant,
        result: Result<T, Status>,
    ) -> Result<Response<T>, Status> {
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.node.metrics.grpc_call(method, result.is_ok(), ns);
        if larder_proto::trace::on() {
            let span = tracing::Span::current();
            let code = result.as_ref().err().map_or(tonic::Code::Ok, Status::code);
            span.record("rpc.grpc.status_code", code as i32);
            if result.is_err() {
                span.record("otel.status_code", "ERROR");
            }
        }
        result.map(Response::new)
    }

    /// The milliseconds an entry expiring at `expires_at` has left (0: it does not expire).
    /// A live entry always has at least one, so 0 keeps meaning "no expiry"; the clock is
    /// read only for entries that expire.
    fn ttl_left(&self, expires_at: Option<u64>) -> u64 {
        expires_at.map_or(0, |at| at.saturating_sub(self.node.now_ms()).max(1))
    }

    fn entry(&self, served: Served) -> pb::Entry {
        pb::Entry {
            ttl_ms: self.ttl_left(served.expires_at),
            value: served.value,
            version: served.version,
            stale: served.stale,
        }
    }

    async fn get_one(&self, req: &pb::GetRequest) -> Result<pb::GetResponse, OpError> {
        let found = |entry: EntryRef<'_>, stale| pb::Entry {
            value: Bytes::copy_from_slice(entry.value),
            version: entry.version,
            ttl_ms: self.ttl_left(entry.expires_at),
            stale,
        };
        // Recorded before the read, so that a change the read does not see is notified.
        let tracked = req.track != 0
            && self
                .node
                .tracking
                .named(req.track)
                .is_some_and(|subscriber| self.node.tracking.track(&subscriber, &req.key));
        let (read, lease) = if req.lease {
            self.node.read_leased(&req.key, found)
        } else {
            (self.node.read(&req.key, found), 0)
        };
        let entry = match read {
            Read::Found(entry) => Some(entry),
            Read::Missing => None,
            Read::Load(pending) => pending.finish().await?.map(|s| self.entry(s)),
        };
        Ok(pb::GetResponse {
            entry,
            lease,
            tracked,
        })
    }

    async fn set_one(&self, req: &pb::SetRequest) -> Result<pb::SetResponse, Status> {
        let opts = set_options(req)?;
        if req.lease != 0 {
            let outcome = self
                .node
                .fill(&req.key, &req.value, opts, req.lease)
                .map_err(status)?;
            if req.await_invalidation {
                self.node.tracking.barrier().wait().await;
            }
            return Ok(pb::SetResponse {
                stored: outcome.stored,
                version: outcome.version.unwrap_or(0),
            });
        }
        let response = match self.node.set(&req.key, &req.value, opts).map_err(status)? {
            SetResult::Done(outcome) => pb::SetResponse {
                stored: outcome.stored,
                version: outcome.version.unwrap_or(0),
            },
            SetResult::Origin(pending) => pb::SetResponse {
                stored: true,
                version: pending.finish().await.map_err(status)?,
            },
        };
        if req.await_invalidation {
            self.node.tracking.barrier().wait().await;
        }
        Ok(response)
    }
}

/// The status of a failed operation.
fn status(err: OpError) -> Status {
    err.code().status(err.to_string())
}

fn ttl(ms: u64) -> Expiry {
    if ms == 0 {
        Expiry::Never
    } else {
        Expiry::In(Duration::from_millis(ms))
    }
}

fn invalid(message: &str) -> Status {
    ErrorCode::InvalidArgument.status(message)
}

/// The store options a `SetRequest` asks for.
fn set_options(req: &pb::SetRequest) -> Result<SetOptions, Status> {
    let mode = match pb::SetMode::try_from(req.mode) {
        Ok(pb::SetMode::Always) => SetMode::Always,
        Ok(pb::SetMode::IfAbsent) => SetMode::IfAbsent,
        Ok(pb::SetMode::IfPresent) => SetMode::IfPresent,
        Ok(pb::SetMode::IfNewerVersion) if req.version == 0 => {
            return Err(invalid(
                "SET_MODE_IF_NEWER_VERSION needs a non-zero version",
            ));
        }
        Ok(pb::SetMode::IfNewerVersion) => SetMode::IfNewerVersion(req.version),
        Err(_) => return Err(invalid("unknown set mode")),
    };
    if req.keep_ttl && req.ttl_ms != 0 {
        return Err(invalid("keep_ttl and ttl_ms cannot both be set"));
    }
    Ok(SetOptions {
        mode,
        expiry: if req.keep_ttl {
            Expiry::Keep
        } else {
            ttl(req.ttl_ms)
        },
        version: (req.version != 0).then_some(req.version),
        return_previous: false,
    })
}

#[tonic::async_trait]
impl Cache for CacheService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let started = Instant::now();
        let forwarded = forward::is_forwarded(request.metadata());
        let result = self.get_routed(request.into_inner(), forwarded).await;
        self.done(0, started, result)
    }

    type GetEachStream = each::Replies;

    async fn get_each(
        &self,
        request: Request<pb::GetEachRequest>,
    ) -> Result<Response<Self::GetEachStream>, Status> {
        let started = Instant::now();
        let forwarded = forward::is_forwarded(request.metadata());
        let result = self.get_each_replies(request.into_inner().gets, forwarded);
        self.done(10, started, result)
    }

    async fn get_many(
        &self,
        request: Request<pb::GetManyRequest>,
    ) -> Result<Response<pb::GetManyResponse>, Status> {
        let started = Instant::now();
        let keys = &request.get_ref().keys;
        let split = self.split(request.metadata(), keys.iter().map(|k| &k[..]));
        let result = self.get_many_split(keys, split).await;
        self.done(1, started, result)
    }

    async fn set(
        &self,
        request: Request<pb::SetRequest>,
    ) -> Result<Response<pb::SetResponse>, Status> {
        let call = |mut c: Client, r| async move { c.set(r).await };
        self.one_key(2, request, call, async |req| self.set_one(req).await)
            .await
    }

    async fn set_many(
        &self,
        request: Request<pb::SetManyRequest>,
    ) -> Result<Response<pb::SetManyResponse>, Status> {
        use pb::set_many_result::Result as One;
        let started = Instant::now();
        let items = &request.get_ref().items;
        let split = self.split(request.metadata(), items.iter().map(|i| &i.key[..]));
        let mut results = vec![None; items.len()];
        for &i in &split.local {
            results[i] = Some(match self.set_one(&items[i]).await {
                Ok(ok) => One::Ok(ok),
                Err(status) => failure(&status),
            });
        }
        for (owner, indices) in split.remote {
            let message = pb::SetManyRequest {
                items: forward::pick(items, &indices),
            };
            let reply = self
                .send_to(
                    &owner,
                    message,
                    |mut c, r| async move { c.set_many(r).await },
                )
                .await;
            for (n, &i) in indices.iter().enumerate() {
                results[i] = match &reply {
                    Ok(reply) => reply.results.get(n).and_then(|r| r.result.clone()),
                    Err(status) => Some(failure(status)),
                };
            }
        }
        let results = results
            .into_iter()
            .map(|result| pb::SetManyResult { result })
            .collect();
        self.done(3, started, Ok(pb::SetManyResponse { results }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let started = Instant::now();
        let await_invalidation = request.get_ref().await_invalidation;
        let result = self
            .count_keys(
                request.metadata(),
                &request.get_ref().keys,
                |key| self.node.delete(key),
                |keys| pb::DeleteRequest {
                    keys,
                    await_invalidation,
                },
                |mut c: Client, r| async move { c.delete(r).await },
                |reply| reply.deleted,
            )
            .await
            .map(|deleted| pb::DeleteResponse { deleted });
        if await_invalidation {
            self.node.tracking.barrier().wait().await;
        }
        self.done(4, started, result)
    }

    async fn expire(
        &self,
        request: Request<pb::ExpireRequest>,
    ) -> Result<Response<pb::ExpireResponse>, Status> {
        let call = |mut c: Client, r| async move { c.expire(r).await };
        self.one_key(5, request, call, async |req| {
            self.node
                .expire(&req.key, ttl(req.ttl_ms))
                .map(|found| pb::ExpireResponse { found })
                .map_err(status)
        })
        .await
    }

    async fn incr(
        &self,
        request: Request<pb::IncrRequest>,
    ) -> Result<Response<pb::IncrResponse>, Status> {
        let call = |mut c: Client, r| async move { c.incr(r).await };
        self.one_key(6, request, call, async |req| {
            self.node
                .incr(&req.key, req.delta)
                .map(|value| pb::IncrResponse { value })
                .map_err(status)
        })
        .await
    }

    async fn compare_and_set(
        &self,
        request: Request<pb::CompareAndSetRequest>,
    ) -> Result<Response<pb::CompareAndSetResponse>, Status> {
        let call = |mut c: Client, r| async move { c.compare_and_set(r).await };
        self.one_key(7, request, call, async |req| {
            let outcome = self
                .node
                .compare_and_set(&req.key, req.expected_version, &req.value, ttl(req.ttl_ms))
                .map_err(status)?;
            Ok(match outcome {
                CasOutcome::Swapped(version) => pb::CompareAndSetResponse {
                    swapped: true,
                    version,
                },
                CasOutcome::Mismatch(version) => pb::CompareAndSetResponse {
                    swapped: false,
                    version: version.unwrap_or(0),
                },
            })
        })
        .await
    }

    async fn stats(
        &self,
        _: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let started = Instant::now();
        let s = self.node.store.stats();
        let stats = pb::StatsResponse {
            hits: s.hits,
            misses: s.misses,
            sets: s.sets,
            evictions: s.evictions,
            expirations: s.expirations,
            used_bytes: s.used,
            max_bytes: s.capacity,
            items: s.items,
        };
        self.done(8, started, Ok(stats))
    }

    async fn invalidate(
        &self,
        request: Request<pb::InvalidateRequest>,
    ) -> Result<Response<pb::InvalidateResponse>, Status> {
        let started = Instant::now();
        let await_invalidation = request.get_ref().await_invalidation;
        let result = self
            .count_keys(
                request.metadata(),
                &request.get_ref().keys,
                |key| self.node.invalidate(key),
                |keys| pb::InvalidateRequest {
                    keys,
                    await_invalidation,
                },
                |mut c: Client, r| async move { c.invalidate(r).await },
                |reply| reply.invalidated,
            )
            .await
            .map(|invalidated| pb::InvalidateResponse { invalidated });
        if await_invalidation {
            self.node.tracking.barrier().wait().await;
        }
        self.done(9, started, result)
    }

    type WatchStream = watch::Events;

    async fn watch(
        &self,
        request: Request<tonic::Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let started = Instant::now();
        let result = watch::start(self.node.clone(), request.into_inner()).await;
        self.done(11, started, result)
    }
}

impl CacheService {
    /// `GetMany` over a split: local keys read here (every load started before any is
    /// awaited), the others asked of their owners, the answers in request order.
    async fn get_many_split(
        &self,
        keys: &[Bytes],
        split: forward::Split,
    ) -> Result<pb::GetManyResponse, Status> {
        let local: Vec<Bytes> = forward::pick(keys, &split.local);
        let values = self.node.read_all(&local).await.map_err(status)?;
        let mut results = vec![pb::GetResponse::default(); keys.len()];
        for (&i, value) in split.local.iter().zip(values) {
            results[i].entry = value.map(|s| self.entry(s));
        }
        for (owner, indices) in split.remote {
            let message = pb::GetManyRequest {
                keys: forward::pick(keys, &indices),
            };
            let reply = self
                .send_to(
                    &owner,
                    message,
                    |mut c, r| async move { c.get_many(r).await },
                )
                .await?;
            for (&i, result) in indices.iter().zip(reply.results) {
                results[i] = result;
            }
        }
        Ok(pb::GetManyResponse { results })
    }
}

/// A `SetMany` item's failure.
fn failure(status: &Status) -> pb::set_many_result::Result {
    pb::set_many_result::Result::Error(failure_of(status))
}

/// A status as one item's failure in a call of many.
fn failure_of(status: &Status) -> pb::Failure {
    pb::Failure {
        code: status.code() as i32,
        message: status.message().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_requests_are_checked() {
        let newer = pb::SetRequest {
            mode: pb::SetMode::IfNewerVersion as i32,
            ..Default::default()
        };
        assert_eq!(
            set_options(&newer).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let both = pb::SetRequest {
            keep_ttl: true,
            ttl_ms: 5,
            ..Default::default()
        };
        assert_eq!(
            set_options(&both).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let bad_mode = pb::SetRequest {
            mode: 42,
            ..Default::default()
        };
        assert!(set_options(&bad_mode).is_err());
        let ok = pb::SetRequest {
            version: 7,
            ttl_ms: 10,
            ..Default::default()
        };
        let opts = set_options(&ok).unwrap();
        assert_eq!(opts.version, Some(7));
        assert_eq!(opts.expiry, Expiry::In(Duration::from_millis(10)));
    }
}
