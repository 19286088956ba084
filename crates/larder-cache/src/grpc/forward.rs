//! Forwarding in a cluster: a request for a key another node owns is sent on to that owner,
//! once (the forwarded request carries a mark, and a node never forwards a marked request
//! again, whatever its own table says), so a plain gRPC client that knows one node reaches
//! every key. Requests for many keys are split by owner, sent concurrently, and put back
//! together in request order.

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;

use larder_cluster::Member;
use larder_proto::grpc::cache::v1 as pb;
use pb::cache_client::CacheClient;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::CacheService;
use crate::cluster::ClusterView;
use crate::cluster::peers::forwarded;

/// A request about one key.
pub(super) trait Keyed {
    fn key(&self) -> &[u8];
}

macro_rules! keyed {
    ($($request:ty),*) => {$(
        impl Keyed for $request {
            fn key(&self) -> &[u8] {
                &self.key
            }
        }
    )*};
}

keyed!(
    pb::SetRequest,
    pb::ExpireRequest,
    pb::IncrRequest,
    pb::CompareAndSetRequest
);

/// Keys (or items) of one request grouped by where they go.
#[derive(Debug, Default)]
pub(super) struct Split {
    /// Indices of the ones this node serves.
    pub(super) local: Vec<usize>,
    /// Other owners and the indices of theirs.
    pub(super) remote: Vec<(Member, Vec<usize>)>,
}

impl CacheService {
    /// Sends `request` on to the owner of `key` with `call`, if another node owns it and the
    /// request was not forwarded already; `None` when this node serves it.
    pub(super) async fn route_one<M, R, F, Fut>(
        &self,
        request: &Request<M>,
        key: &[u8],
        call: F,
    ) -> Option<Result<R, Status>>
    where
        M: Clone,
        F: FnOnce(CacheClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let view = self.node.cluster.as_ref()?;
        let owner = view.forward_target(key, forwarded(request.metadata()))?;
        Some(self.send_to(&owner, request.get_ref().clone(), call).await)
    }

    /// A call about one key (`Set`, `Expire`, `Incr`, `CompareAndSet`): sent on to the key's
    /// owner with `call` when that is another node, answered here by `local` otherwise, and
    /// counted as `method`.
    pub(super) async fn one_key<M, R, F, Fut>(
        &self,
        method: usize,
        request: Request<M>,
        call: F,
        local: impl AsyncFnOnce(&M) -> Result<R, Status>,
    ) -> Result<Response<R>, Status>
    where
        M: Clone + Keyed,
        F: FnOnce(CacheClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let started = Instant::now();
        let result = match self
            .route_one(&request, request.get_ref().key(), call)
            .await
        {
            Some(forwarded) => forwarded,
            None => local(request.get_ref()).await,
        };
        self.done(method, started, result)
    }

    /// A call that counts what it did to many keys (`Delete`, `Invalidate`): the keys this
    /// node serves go to `local`, the others to their owners (`message` builds each owner's
    /// request, `call` sends it, `count` reads its answer), and the counts are added. An
    /// owner's failure fails the call.
    pub(super) async fn count_keys<M, R, F, Fut>(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        keys: &[Bytes],
        local: impl Fn(&[u8]) -> bool,
        message: impl Fn(Vec<Bytes>) -> M,
        call: F,
        count: impl Fn(&R) -> u64,
    ) -> Result<u64, Status>
    where
        F: Fn(CacheClient<Channel>, Request<M>) -> Fut + Copy,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let split = self.split(metadata, keys.iter().map(|k| &k[..]));
        let mut total = split.local.iter().filter(|&&i| local(&keys[i])).count() as u64;
        for (owner, indices) in split.remote {
            let reply = self
                .send_to(&owner, message(pick(keys, &indices)), call)
                .await?;
            total += count(&reply);
        }
        Ok(total)
    }

    /// Sends `message` to `member`, marked as forwarded.
    pub(super) async fn send_to<M, R, F, Fut>(
        &self,
        member: &Member,
        message: M,
        call: F,
    ) -> Result<R, Status>
    where
        F: FnOnce(CacheClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let Some(view) = &self.node.cluster else {
            return Err(Status::failed_precondition("this node is not clustered"));
        };
        view.metrics
            .forwarded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let client = view.peers.cache(&member.grpc)?;
        let request = view.peers.request(message, view.snapshot().table.epoch());
        call(client, request)
            .await
            .map(Response::into_inner)
            .map_err(|status| owner_status(member, status))
    }

    /// Groups `keys` by owner (everything local when the node is not clustered or the request
    /// was forwarded).
    pub(super) fn split<'k>(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        keys: impl Iterator<Item = &'k [u8]>,
    ) -> Split {
        let mut split = Split::default();
        let view = match &self.node.cluster {
            Some(view) if !forwarded(metadata) => view,
            _ => {
                split.local = keys.enumerate().map(|(i, _)| i).collect();
                return split;
            }
        };
        let snapshot = view.snapshot();
        for (i, key) in keys.enumerate() {
            match snapshot.route(larder_cluster::key_slot(key)) {
                crate::cluster::Route::Moved(owner) => {
                    match split.remote.iter_mut().find(|(m, _)| m.id == owner.id) {
                        Some((_, indices)) => indices.push(i),
                        None => split.remote.push((owner.clone(), vec![i])),
                    }
                }
                _ => split.local.push(i),
            }
        }
        split
    }

    /// A `Get`: forwarded once to the key's owner if another member owns it; else served
    /// here, and a miss of a key whose partition is moving here is asked of the member it
    /// moves from (its answer counts only if it holds the key).
    pub(super) async fn get_routed(
        &self,
        get: pb::GetRequest,
        forwarded: bool,
    ) -> Result<pb::GetResponse, Status> {
        let Some(view) = &self.node.cluster else {
            return self.get_one(&get).await.map_err(super::status);
        };
        if let Some(owner) = view.forward_target(&get.key, forwarded) {
            return forward_get(view, &owner, get).await;
        }
        let result = self.get_one(&get).await.map_err(super::status);
        let tracked = matches!(&result, Ok(reply) if reply.tracked);
        if forwarded || !matches!(&result, Ok(reply) if reply.entry.is_none()) {
            return result;
        }
        let Some(from) = view
            .ask_target(&get.key)
            .filter(|_| !view.touched(&get.key))
        else {
            return result;
        };
        let asked = pb::GetRequest {
            key: get.key,
            lease: false,
            track: 0,
        };
        // The read was tracked here, the key's owner now, whatever the previous owner says.
        match forward_get(view, &from, asked).await {
            Ok(found) if found.entry.is_some() => Ok(pb::GetResponse { tracked, ..found }),
            _ => result,
        }
    }
}

/// Whether a request was forwarded by another node already.
pub(super) fn is_forwarded(metadata: &tonic::metadata::MetadataMap) -> bool {
    forwarded(metadata)
}

/// Reads `get` from `member` (queued with the other reads going there).
async fn forward_get(
    view: &ClusterView,
    member: &Member,
    get: pb::GetRequest,
) -> Result<pb::GetResponse, Status> {
    view.metrics
        .forwarded
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let epoch = view.snapshot().table.epoch();
    view.peers
        .get(&member.grpc, get, epoch)
        .await
        .map_err(|status| owner_status(member, status))
}

/// A peer's failure as this node answers it: an unreachable owner is named.
fn owner_status(member: &Member, status: Status) -> Status {
    if status.code() == tonic::Code::Unavailable {
        Status::unavailable(format!("owner {}: {}", member.id, status.message()))
    } else {
        status
    }
}

/// Picks `indices` out of `items`.
pub(super) fn pick<T: Clone>(items: &[T], indices: &[usize]) -> Vec<T> {
    indices.iter().map(|&i| items[i].clone()).collect()
}
