//! The gRPC framework's floor, for `bench/compare-grpc.sh`: a bare tonic server for the same
//! `larder.cache.v1.Cache` contract whose `Get` answers an empty message without touching any
//! store. The cache node's CPU per call is compared against this one's, in the same run.
//! Run: `cargo run --release -p larder-cache --example grpc_floor -- 127.0.0.1:17170`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use larder_proto::grpc::cache::v1 as pb;
use pb::cache_server::{Cache, CacheServer};
use tonic::{Request, Response, Status};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Floor;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Cache for Floor {
    async fn get(&self, _: Request<pb::GetRequest>) -> Reply<pb::GetResponse> {
        Ok(Response::new(pb::GetResponse::default()))
    }
    async fn get_many(&self, _: Request<pb::GetManyRequest>) -> Reply<pb::GetManyResponse> {
        Ok(Response::new(pb::GetManyResponse::default()))
    }
    async fn set(&self, _: Request<pb::SetRequest>) -> Reply<pb::SetResponse> {
        Ok(Response::new(pb::SetResponse::default()))
    }
    async fn set_many(&self, _: Request<pb::SetManyRequest>) -> Reply<pb::SetManyResponse> {
        Ok(Response::new(pb::SetManyResponse::default()))
    }
    async fn delete(&self, _: Request<pb::DeleteRequest>) -> Reply<pb::DeleteResponse> {
        Ok(Response::new(pb::DeleteResponse::default()))
    }
    async fn expire(&self, _: Request<pb::ExpireRequest>) -> Reply<pb::ExpireResponse> {
        Ok(Response::new(pb::ExpireResponse::default()))
    }
    async fn incr(&self, _: Request<pb::IncrRequest>) -> Reply<pb::IncrResponse> {
        Ok(Response::new(pb::IncrResponse::default()))
    }
    async fn compare_and_set(
        &self,
        _: Request<pb::CompareAndSetRequest>,
    ) -> Reply<pb::CompareAndSetResponse> {
        Ok(Response::new(pb::CompareAndSetResponse::default()))
    }
    async fn stats(&self, _: Request<pb::StatsRequest>) -> Reply<pb::StatsResponse> {
        Ok(Response::new(pb::StatsResponse::default()))
    }
    async fn invalidate(&self, _: Request<pb::InvalidateRequest>) -> Reply<pb::InvalidateResponse> {
        Ok(Response::new(pb::InvalidateResponse::default()))
    }
    type GetEachStream = futures_util::stream::Empty<Result<pb::GetEachReply, Status>>;
    async fn get_each(&self, _: Request<pb::GetEachRequest>) -> Reply<Self::GetEachStream> {
        Ok(Response::new(futures_util::stream::empty()))
    }
    type WatchStream = futures_util::stream::Empty<Result<pb::WatchEvent, Status>>;
    async fn watch(
        &self,
        _: Request<tonic::Streaming<pb::WatchRequest>>,
    ) -> Reply<Self::WatchStream> {
        Ok(Response::new(futures_util::stream::empty()))
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:17170".into())
        .parse()
        .expect("an address such as 127.0.0.1:17170");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        println!("grpc floor listening on {addr}");
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(CacheServer::new(Floor))
            .serve_with_shutdown(addr, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .unwrap();
    });
}
