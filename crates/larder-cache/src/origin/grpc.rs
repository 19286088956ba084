//! The gRPC origin: an application's `larder.cache.v1.Origin` service
//! (`proto/larder/cache/v1/origin.proto`). Each call carries the whole key, its named parts
//! and the origin's name, so one service can serve several origins; `NOT_FOUND` from `Load`
//! means the same as `found = false`.
//!
//! The channel connects on first use, so the node starts while the origin is down, and
//! reconnects by itself after a failure. Plain HTTP/2 only: the node has no TLS client.

use std::collections::HashMap;
use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use larder_proto::grpc::cache::v1 as pb;
use pb::origin_client::OriginClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use super::Fetched;
use super::http::{MAX_BODY, with_causes};
use super::pattern::Parts;

/// Why a grpc origin could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GrpcUrlError {
    /// `https://`: the node has no TLS client.
    #[error("https is not supported (the node has no TLS client): use http://")]
    Https,
    /// Another scheme, or none.
    #[error("the url must be http://host:port")]
    NotHttp,
    /// tonic refused the URL.
    #[error("the url is not valid: {0}")]
    Invalid(tonic::transport::Error),
    /// There is no tokio runtime to drive the channel.
    #[error("a grpc origin must be created within a tokio runtime")]
    NoRuntime,
}

/// A gRPC origin.
#[derive(Debug)]
pub(crate) struct GrpcOrigin {
    /// The configured name, sent as `origin` in every request.
    name: String,
    client: OriginClient<Channel>,
    /// Sent as the call's deadline, so the origin can give up when the node has.
    timeout: Duration,
}

impl GrpcOrigin {
    /// An origin at `url` (`http://host:port`). Call within the runtime that should run the
    /// channel.
    ///
    /// # Errors
    /// The URL is not `http://` or not valid, or there is no tokio runtime.
    pub(crate) fn new(name: &str, url: &str, timeout: Duration) -> Result<Self, GrpcUrlError> {
        if url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        {
            return Err(GrpcUrlError::Https);
        }
        if !url
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        {
            return Err(GrpcUrlError::NotHttp);
        }
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(GrpcUrlError::Invalid)?
            .tcp_nodelay(true)
            .connect_timeout(timeout);
        // The channel's worker task is spawned here; without a runtime tonic would panic.
        tokio::runtime::Handle::try_current().map_err(|_| GrpcUrlError::NoRuntime)?;
        let client = OriginClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_BODY)
            .max_encoding_message_size(MAX_BODY);
        Ok(Self {
            name: name.to_owned(),
            client,
            timeout,
        })
    }

    /// Calls `Load`.
    ///
    /// # Errors
    /// The status of a failed call (not `NOT_FOUND`, which is [`Fetched::NotFound`]); it reads
    /// as [`status_message`] says.
    pub(crate) async fn load(&self, key: &[u8], parts: &Parts<'_>) -> Result<Fetched, Status> {
        let request = pb::LoadRequest {
            key: Bytes::copy_from_slice(key),
            parts: parts_map(parts),
            origin: self.name.clone(),
        };
        let reply = match self.client.clone().load(self.request(request)).await {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(Fetched::NotFound),
            Err(status) => return Err(status),
        };
        if !reply.found {
            return Ok(Fetched::NotFound);
        }
        Ok(Fetched::Found {
            value: reply.value,
            version: (reply.version != 0).then_some(reply.version),
        })
    }

    /// Calls `Store`; the version the origin reported, if any.
    pub(crate) async fn store(
        &self,
        key: &[u8],
        parts: &Parts<'_>,
        value: &[u8],
    ) -> Result<Option<u64>, Status> {
        let request = pb::StoreRequest {
            key: Bytes::copy_from_slice(key),
            parts: parts_map(parts),
            value: Bytes::copy_from_slice(value),
            origin: self.name.clone(),
        };
        let reply = self
            .client
            .clone()
            .store(self.request(request))
            .await?
            .into_inner();
        Ok((reply.version != 0).then_some(reply.version))
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        larder_proto::trace::inject_metadata(request.metadata_mut());
        request
    }
}

/// The key's parts as the request's map.
fn parts_map(parts: &Parts<'_>) -> HashMap<String, Bytes> {
    parts
        .iter()
        .map(|(name, bytes)| ((*name).to_owned(), Bytes::copy_from_slice(bytes)))
        .collect()
}

/// `<code>: <message>`, cut short; a transport failure's cause is added when the status
/// carries one.
pub(super) fn status_message(status: &Status) -> String {
    let message = format!("{:?}: {}", status.code(), status.message());
    with_causes(message, status.source())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_are_checked_and_nothing_connects_until_a_call() {
        let timeout = Duration::from_millis(500);
        assert!(
            GrpcOrigin::new("o", "https://h:1", timeout)
                .unwrap_err()
                .to_string()
                .contains("TLS")
        );
        assert!(
            GrpcOrigin::new("o", "h:1", timeout)
                .unwrap_err()
                .to_string()
                .contains("http://")
        );
        assert!(GrpcOrigin::new("o", "http://h a:1", timeout).is_err());

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let origin = GrpcOrigin::new("o", &format!("http://{addr}"), timeout).unwrap();
        let parts: Parts<'_> = vec![("id", b"1")];
        let err = status_message(&origin.load(b"doc/1", &parts).await.unwrap_err());
        assert!(err.starts_with("Unavailable: "), "{err}");
    }

    #[test]
    fn creating_outside_a_runtime_is_an_error() {
        let err = GrpcOrigin::new("o", "http://127.0.0.1:1", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, GrpcUrlError::NoRuntime), "{err:?}");
        assert!(err.to_string().contains("runtime"), "{err}");
    }

    #[test]
    fn statuses_become_short_messages() {
        assert_eq!(
            status_message(&Status::unavailable("db down")),
            "Unavailable: db down"
        );
        let long = status_message(&Status::internal("x".repeat(1_000)));
        assert!(long.chars().count() <= super::super::http::MAX_MESSAGE + 1);
    }
}
