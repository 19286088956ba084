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

use crate::node::{Node, unix_ms};
use crate::origin::{Origin, OriginError, Origins, Served, Step, served};

/// The `Cache` service of one node.
#[derive(Debug, Clone)]
pub(crate) struct CacheService {
    node: Arc<Node>,
}

/// Every gRPC service the node serves, ready for a tonic server.
pub(crate) fn routes(node: Arc<Node>) -> Result<Routes, tonic_reflection::server::Error> {
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
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // Reporting is synchronous in effect: the reporter only updates a watch channel.
    let reporter = health_reporter.clone();
    tokio::spawn(async move {
        reporter.set_serving::<CacheServer<CacheService>>().await;
    });
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
    /// Counts a call of method `method` (an index into `GRPC_METHODS`) and passes it on.
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

    fn entry(&self, key: &[u8]) -> Option<pb::Entry> {
        self.node.store.get_with(key, to_entry)
    }

    /// The first half of reading `key`: through its origin if it has one, else the store.
    fn begin(&self, key: &[u8]) -> Step {
        match &self.node.origins {
            Some(origins) => match origins.find(key) {
                Some(origin) => origins.begin(origin, key),
                None => Step::Done(Ok(self.node.store.get_with(key, served))),
            },
            None => Step::Done(Ok(self.node.store.get_with(key, served))),
        }
    }

    /// The write-through origin of `key`, if it has one.
    fn write_through(&self, key: &[u8]) -> Option<(&Arc<Origins>, &Arc<Origin>)> {
        let origins = self.node.origins.as_ref()?;
        let origin = origins.find(key).filter(|o| o.write_through())?;
        Some((origins, origin))
    }

    /// Refuses a change other than a plain set to a write-through key.
    /// Also retires any load in flight of a key an origin claims, so it cannot replace
    /// this write.
    fn refuse_write_through(&self, key: &[u8], what: &str) -> Result<(), Status> {
        if self.write_through(key).is_some() {
            return Err(ErrorCode::Conflict
                .status(format!("{what} cannot change a write-through key; use Set")));
        }
        self.retire(key);
        Ok(())
    }

    /// Retires the load in flight of a key an origin claims (see `Origins::retire`).
    fn retire(&self, key: &[u8]) {
        if let Some(origins) = &self.node.origins
            && origins.find(key).is_some()
        {
            origins.retire(key);
        }
    }
}

fn served_entry(served: Served) -> pb::Entry {
    pb::Entry {
        value: served.value,
        version: served.version,
        ttl_ms: served
            .expires_at
            .map_or(0, |at| at.saturating_sub(unix_ms()).max(1)),
        stale: served.stale,
    }
}

fn origin_status(err: &OriginError) -> Status {
    err.code().status(err.to_string())
}

fn to_entry(entry: EntryRef<'_>) -> pb::Entry {
    pb::Entry {
        value: Bytes::copy_from_slice(entry.value),
        version: entry.version,
        // A live entry always has at least a millisecond left, so 0 keeps meaning "no expiry".
        // The clock is read only for entries that expire.
        ttl_ms: entry
            .expires_at
            .map_or(0, |at| at.saturating_sub(unix_ms()).max(1)),
        stale: false,
    }
}

fn ttl(ms: u64) -> Expiry {
    if ms == 0 {
        Expiry::Never
    } else {
        Expiry::In(Duration::from_millis(ms))
    }
}

fn store_status(err: &larder_store::StoreError) -> Status {
    crate::node::error::store_code(err).status(err.to_string())
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

impl CacheService {
    async fn set_one(&self, req: &pb::SetRequest) -> Result<pb::SetResponse, Status> {
        if let Some((origins, origin)) = self.write_through(&req.key) {
            let plain = req.mode == pb::SetMode::Always as i32
                && req.version == 0
                && req.ttl_ms == 0
                && !req.keep_ttl;
            if !plain {
                return Err(invalid(
                    "a write-through key takes a plain set: mode ALWAYS, no version, no TTL",
                ));
            }
            let version = origins
                .write(origin, &req.key, &req.value)
                .await
                .map_err(|e| origin_status(&e))?;
            return Ok(pb::SetResponse {
                stored: true,
                version,
            });
        }
        let opts = set_options(req)?;
        self.retire(&req.key);
        let outcome = self
            .node
            .store
            .set(&req.key, &req.value, opts)
            .map_err(|e| store_status(&e))?;
        Ok(pb::SetResponse {
            stored: outcome.stored,
            version: outcome.version.unwrap_or(0),
        })
    }
}

#[tonic::async_trait]
impl Cache for CacheService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let started = Instant::now();
        let key = &request.get_ref().key;
        let result = if self.node.origins.is_none() {
            Ok(pb::GetResponse {
                entry: self.entry(key),
            })
        } else {
            Origins::finish(self.begin(key))
                .await
                .map(|found| pb::GetResponse {
                    entry: found.map(served_entry),
                })
                .map_err(|e| origin_status(&e))
        };
        self.done(0, started, result)
    }

    async fn get_many(
        &self,
        request: Request<pb::GetManyRequest>,
    ) -> Result<Response<pb::GetManyResponse>, Status> {
        let started = Instant::now();
        if self.node.origins.is_some() {
            let result = self.get_many_through(&request.get_ref().keys).await;
            return self.done(1, started, result);
        }
        let (mut results, mut bytes) = (Vec::new(), 0usize);
        let mut too_large = false;
        for key in &request.get_ref().keys {
            let entry = self.entry(key);
            bytes += entry.as_ref().map_or(0, |e| e.value.len());
            // A small request can ask for an enormous reply (the same big key many times).
            if bytes > self.node.max_request {
                too_large = true;
                break;
            }
            results.push(pb::GetResponse { entry });
        }
        let result = if too_large {
            Err(ErrorCode::TooLarge.status("reply larger than max_request; ask for fewer keys"))
        } else {
            Ok(pb::GetManyResponse { results })
        };
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
        let store = &self.node.store;
        let deleted = request
            .get_ref()
            .keys
            .iter()
            .filter(|key| {
                self.retire(key);
                store.delete(key)
            })
            .count();
        self.done(
            4,
            started,
            Ok(pb::DeleteResponse {
                deleted: deleted as u64,
            }),
        )
    }

    async fn expire(
        &self,
        request: Request<pb::ExpireRequest>,
    ) -> Result<Response<pb::ExpireResponse>, Status> {
        let started = Instant::now();
        let req = request.get_ref();
        let result = self
            .node
            .store
            .expire(&req.key, ttl(req.ttl_ms))
            .map(|found| pb::ExpireResponse { found })
            .map_err(|e| store_status(&e));
        self.done(5, started, result)
    }

    async fn incr(
        &self,
        request: Request<pb::IncrRequest>,
    ) -> Result<Response<pb::IncrResponse>, Status> {
        let started = Instant::now();
        let req = request.get_ref();
        let result = self
            .refuse_write_through(&req.key, "Incr")
            .and_then(|()| {
                self.node
                    .store
                    .incr(&req.key, req.delta)
                    .map_err(|e| store_status(&e))
            })
            .map(|value| pb::IncrResponse { value });
        self.done(6, started, result)
    }

    async fn compare_and_set(
        &self,
        request: Request<pb::CompareAndSetRequest>,
    ) -> Result<Response<pb::CompareAndSetResponse>, Status> {
        let started = Instant::now();
        let req = request.get_ref();
        let result = self
            .refuse_write_through(&req.key, "CompareAndSet")
            .and_then(|()| {
                let ttl = ttl(req.ttl_ms);
                let store = &self.node.store;
                store
                    .compare_and_set(&req.key, req.expected_version, &req.value, ttl)
                    .map_err(|e| store_status(&e))
            })
            .map(|outcome| match outcome {
                CasOutcome::Swapped(version) => pb::CompareAndSetResponse {
                    swapped: true,
                    version,
                },
                CasOutcome::Mismatch(version) => pb::CompareAndSetResponse {
                    swapped: false,
                    version: version.unwrap_or(0),
                },
            });
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
        let invalidated = match &self.node.origins {
            Some(origins) => keys.iter().filter(|key| origins.invalidate(key)).count(),
            None => keys
                .iter()
                .filter(|key| self.node.store.delete(key))
                .count(),
        };
        let reply = pb::InvalidateResponse {
            invalidated: invalidated as u64,
        };
        self.done(9, started, Ok(reply))
    }
}

impl CacheService {
    /// `GetMany` with origins: every key's load starts (or joins) before any is awaited.
    async fn get_many_through(&self, keys: &[Bytes]) -> Result<pb::GetManyResponse, Status> {
        let steps: Vec<Step> = keys.iter().map(|key| self.begin(key)).collect();
        let (mut results, mut bytes) = (Vec::with_capacity(keys.len()), 0usize);
        for step in steps {
            let found = Origins::finish(step).await.map_err(|e| origin_status(&e))?;
            bytes += found.as_ref().map_or(0, |s| s.value.len());
            if bytes > self.node.max_request {
                return Err(
                    ErrorCode::TooLarge.status("reply larger than max_request; ask for fewer keys")
                );
            }
            results.push(pb::GetResponse {
                entry: found.map(served_entry),
            });
        }
        Ok(pb::GetManyResponse { results })
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
