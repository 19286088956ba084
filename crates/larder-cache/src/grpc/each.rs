//! `GetEach`: independent reads in one call, each served as a `Get` (routed, forwarded or
//! asked of a partition's previous owner like one), answered as a stream in the order they
//! are ready. Everything ready at once (hits and plain misses) is answered in the first reply
//! without a task; a read that waits (an origin load, a read forwarded on) comes later, so it
//! holds up no other.

use std::pin::Pin;

use futures_util::FutureExt as _;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use larder_proto::grpc::cache::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{CacheService, failure_of};

/// Reads in one call at most.
const MAX_READS: usize = 100_000;
/// Value bytes in one reply before the next reply begins.
const REPLY_BYTES: usize = 1 << 20;

/// The replies of one `GetEach` call.
pub(super) type Replies = Pin<Box<dyn Stream<Item = Result<pb::GetEachReply, Status>> + Send>>;

impl CacheService {
    /// Serves `gets` (already forwarded once when `forwarded`), as replies.
    pub(super) fn get_each_replies(
        &self,
        gets: Vec<pb::GetRequest>,
        forwarded: bool,
    ) -> Result<Replies, Status> {
        if gets.len() > MAX_READS {
            return Err(super::invalid(&format!(
                "GetEach takes at most {MAX_READS} reads, not {}",
                gets.len()
            )));
        }
        let mut reads: FuturesUnordered<_> = gets
            .into_iter()
            .enumerate()
            .map(|(index, get)| {
                let service = self.clone();
                async move { (index as u32, service.get_routed(get, forwarded).await) }
            })
            .collect();
        let mut ready = Results::default();
        while let Some(Some((index, result))) = reads.next().now_or_never() {
            ready.push(index, result);
        }
        if reads.is_empty() {
            return Ok(Box::pin(tokio_stream::iter(
                ready.replies.into_iter().map(Ok),
            )));
        }
        let (replies, stream) = mpsc::channel(2);
        tokio::spawn(async move {
            let mut batch = ready;
            loop {
                for reply in std::mem::take(&mut batch.replies) {
                    if replies.send(Ok(reply)).await.is_err() {
                        return; // the caller went away
                    }
                }
                let Some((index, result)) = reads.next().await else {
                    return;
                };
                batch = Results::default();
                batch.push(index, result);
                while let Some(Some((index, result))) = reads.next().now_or_never() {
                    batch.push(index, result);
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(stream)))
    }
}

/// Results gathered into replies of about [`REPLY_BYTES`] of values each.
#[derive(Debug, Default)]
struct Results {
    replies: Vec<pb::GetEachReply>,
    bytes: usize,
}

impl Results {
    fn push(&mut self, index: u32, result: Result<pb::GetResponse, Status>) {
        use pb::get_each_result::Result as One;
        let size = result
            .as_ref()
            .ok()
            .and_then(|r| r.entry.as_ref())
            .map_or(0, |e| e.value.len());
        let full = self.bytes > 0 && self.bytes + size > REPLY_BYTES;
        if self.replies.is_empty() || full {
            self.replies.push(pb::GetEachReply::default());
            self.bytes = 0;
        }
        self.bytes += size;
        let result = match result {
            Ok(response) => One::Ok(response),
            Err(status) => One::Error(failure_of(&status)),
        };
        if let Some(reply) = self.replies.last_mut() {
            reply.results.push(pb::GetEachResult {
                index,
                result: Some(result),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(size: usize) -> Result<pb::GetResponse, Status> {
        Ok(pb::GetResponse {
            entry: Some(pb::Entry {
                value: vec![b'x'; size].into(),
                ..pb::Entry::default()
            }),
            ..pb::GetResponse::default()
        })
    }

    #[test]
    fn results_fill_replies_of_a_bounded_size() {
        let mut results = Results::default();
        results.push(0, hit(REPLY_BYTES / 2));
        results.push(1, hit(REPLY_BYTES / 2));
        results.push(2, Err(Status::unavailable("origin down")));
        results.push(3, hit(1));
        // A value larger than a reply still travels, alone.
        results.push(4, hit(REPLY_BYTES * 2));
        let shape: Vec<Vec<u32>> = results
            .replies
            .iter()
            .map(|r| r.results.iter().map(|r| r.index).collect())
            .collect();
        assert_eq!(shape, [vec![0, 1, 2], vec![3], vec![4]]);
        let failed = &results.replies[0].results[2];
        assert!(matches!(
            &failed.result,
            Some(pb::get_each_result::Result::Error(f))
                if f.code == tonic::Code::Unavailable as i32 && f.message == "origin down"
        ));
    }
}
