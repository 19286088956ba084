//! The gRPC service `larder.cache.v1.Cache` over the node's store, with the bearer-token check,
//! `grpc.health.v1.Health` and server reflection (v1 and v1alpha).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder_proto::ErrorCode;
use larder_proto::grpc::cache::v1 as pb;
use larder_store::{CasOutcome, EntryRef, Expiry, SetMode, SetOptions};
use pb::cache_server::{Cache, CacheServer};
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::node::Node;
use crate::node::error::OpError;
use crate::node::read::Read;
use crate::node::write::SetResult;
use crate::origin::Served;

/// gRPC method names, in the order the service counts them.
pub(crate) const METHODS: [&str; 10] = [
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
];

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
    let server = CacheServer::new(CacheService { node })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    // Without a token there is nothing to check, so calls skip the interceptor altogether.
    let mut routes = if token.is_empty() {
        Routes::new(server)
    } else {
        let check = move |request: Request<()>| authorize(&token, &request).map(|()| request);
        Routes::new(InterceptedService::new(server, check))
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
        .with_service_name("grpc.health.v1.Health")
        .with_service_name(itself)
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
        Ok(pb::GetResponse { entry, lease })
    }

    async fn set_one(&self, req: &pb::SetRequest) -> Result<pb::SetResponse, Status> {
        let opts = set_options(req)?;
        if req.lease != 0 {
            let outcome = self
                .node
                .fill(&req.key, &req.value, opts, req.lease)
                .map_err(status)?;
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
        let result = self.get_one(request.get_ref()).await.map_err(status);
        self.done(0, started, result)
    }

    async fn get_many(
        &self,
        request: Request<pb::GetManyRequest>,
    ) -> Result<Response<pb::GetManyResponse>, Status> {
        let started = Instant::now();
        let result = self
            .node
            .read_all(&request.get_ref().keys)
            .await
            .map(|values| pb::GetManyResponse {
                results: values
                    .into_iter()
                    .map(|value| pb::GetResponse {
                        entry: value.map(|s| self.entry(s)),
                        lease: 0,
                    })
                    .collect(),
            })
            .map_err(status);
        self.done(1, started, result)
    }

    async fn set(
        &self,
        request: Request<pb::SetRequest>,
    ) -> Result<Response<pb::SetResponse>, Status> {
        let started = Instant::now();
        let result = self.set_one(request.get_ref()).await;
        self.done(2, started, result)
    }

    async fn set_many(
        &self,
        request: Request<pb::SetManyRequest>,
    ) -> Result<Response<pb::SetManyResponse>, Status> {
        use pb::set_many_result::Result as One;
        let started = Instant::now();
        let mut results = Vec::with_capacity(request.get_ref().items.len());
        for item in &request.get_ref().items {
            results.push(pb::SetManyResult {
                result: Some(match self.set_one(item).await {
                    Ok(ok) => One::Ok(ok),
                    Err(status) => One::Error(pb::Failure {
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                    }),
                }),
            });
        }
        self.done(3, started, Ok(pb::SetManyResponse { results }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let started = Instant::now();
        let keys = &request.get_ref().keys;
        let deleted = keys.iter().filter(|key| self.node.delete(key)).count();
        let reply = pb::DeleteResponse {
            deleted: deleted as u64,
        };
        self.done(4, started, Ok(reply))
    }

    async fn expire(
        &self,
        request: Request<pb::ExpireRequest>,
    ) -> Result<Response<pb::ExpireResponse>, Status> {
        let started = Instant::now();
        let req = request.get_ref();
        let result = self
            .node
            .expire(&req.key, ttl(req.ttl_ms))
            .map(|found| pb::ExpireResponse { found })
            .map_err(status);
        self.done(5, started, result)
    }

    async fn incr(
        &self,
        request: Request<pb::IncrRequest>,
    ) -> Result<Response<pb::IncrResponse>, Status> {
        let started = Instant::now();
        let req = request.get_ref();
        let result = self
            .node
            .incr(&req.key, req.delta)
            .map(|value| pb::IncrResponse { value })
            .map_err(status);
        self.done(6, started, result)
    }

    async fn compare_and_set(
        &self,
        request: Request<pb::CompareAndSetRequest>,
    ) -> Result<Response<pb::CompareAndSetResponse>, Status> {
        let started = Instant::now();
        let req = request.get_ref();
        let result = self
            .node
            .compare_and_set(&req.key, req.expected_version, &req.value, ttl(req.ttl_ms))
            .map(|outcome| match outcome {
                CasOutcome::Swapped(version) => pb::CompareAndSetResponse {
                    swapped: true,
                    version,
                },
                CasOutcome::Mismatch(version) => pb::CompareAndSetResponse {
                    swapped: false,
                    version: version.unwrap_or(0),
                },
            })
            .map_err(status);
        self.done(7, started, result)
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
        let keys = &request.get_ref().keys;
        let invalidated = keys.iter().filter(|key| self.node.invalidate(key)).count();
        let reply = pb::InvalidateResponse {
            invalidated: invalidated as u64,
        };
        self.done(9, started, Ok(reply))
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
