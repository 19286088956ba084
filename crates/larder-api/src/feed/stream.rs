//! `GET /v1/{collection}/changes`: the collection's changes as Server-Sent Events.
//!
//! A stream starts after the position the client names (`Last-Event-ID`, or `?after=`), or at
//! the log's end. The handler checks that position against the log before answering (400 when
//! it is not a position, 410 when what follows it was pruned), then a task of the stream's own
//! sends the backlog read from the log and switches to the live broadcast. The stream keeps the
//! last position it has passed (every collection's entries count) and skips what it has seen;
//! an event further on than the next position, or a lagged broadcast, makes it read the
//! missing entries from the log first, so there are neither gaps nor duplicates. It ends when
//! the client goes, when the gateway shuts down, or when the log no longer has what it needs
//! (the client's reconnection then gets 410).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http_body::Frame;
use larder_proto::ErrorCode;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc};

use super::{Event, PAGE};
use crate::db::{Change, Page};
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;

/// The media type of the stream.
pub(crate) const EVENT_STREAM: &str = "text/event-stream";
/// Bytes gathered into one write to the client at most (more events wait for the next).
const WRITE_BYTES: usize = 64 * 1024;
/// Writes queued for a client that is slow to take them; the stream waits beyond.
const QUEUED_WRITES: usize = 16;

/// `GET /v1/{collection}/changes`.
pub(crate) async fn changes(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let name = p
        .map(|Path(p)| p)
        .map_err(|e| ApiError::not_found(format!("no such route: {e}")))?;
    let collection = state.collection(&name)?;
    check_accept(&headers)?;
    let Query(pairs) = query.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let asked = position(&headers, &pairs)?;
    let feed = state.feed.clone();
    let live = feed.subscribe();
    let db = feed.db();
    let head = db.change_head().await.map_err(unavailable)?;
    let after = asked.unwrap_or(head);
    let first = match db
        .changes_after(after, PAGE, Some(head))
        .await
        .map_err(unavailable)?
    {
        Page::Next(changes) => changes,
        Page::Gone => {
            return Err(ApiError::new(
                ErrorCode::Gone,
                format!(
                    "the change log no longer holds the events after {after} (it keeps {} s; \
                     it is at {head}): read the collection again and follow the feed from now",
                    state.config.changes_retention_secs
                ),
            ));
        }
    };
    let (out, body) = mpsc::channel(QUEUED_WRITES);
    let subscriber = Subscriber {
        state: state.clone(),
        collection: collection.config.name.clone(),
        last: after,
        out,
        live,
        unsent: 0,
    };
    tokio::spawn(subscriber.run(first));
    let mut response = Response::new(Body::new(Chunks(body)));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies that buffer answers (nginx) would hold events back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// 406 unless `Accept` is absent or allows `text/event-stream`.
fn check_accept(headers: &HeaderMap) -> ApiResult<()> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(());
    };
    let allowed = accept.to_str().unwrap_or_default().split(',').any(|range| {
        let range = range.split(';').next().unwrap_or_default().trim();
        range.eq_ignore_ascii_case(EVENT_STREAM)
            || range.eq_ignore_ascii_case("text/*")
            || range == "*/*"
    });
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::NotAcceptable,
            "the change feed answers text/event-stream",
        ))
    }
}

/// The position a client resumes after: `Last-Event-ID` (which browsers send when they
/// reconnect), else `?after=`; `None` for neither.
fn position(headers: &HeaderMap, query: &[(String, String)]) -> ApiResult<Option<i64>> {
    let mut after = None;
    for (key, value) in query {
        if key != "after" {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {key:?} (the feed takes after)"
            )));
        }
        after = Some(parse_position(value, "after")?);
    }
    match headers.get("last-event-id") {
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                ApiError::bad_request("Last-Event-ID must be the id of an event of this feed")
            })?;
            Ok(Some(parse_position(text, "Last-Event-ID")?))
        }
        None => Ok(after),
    }
}

/// An event id: a decimal number, 0 or more.
fn parse_position(text: &str, what: &str) -> ApiResult<i64> {
    let text = text.trim();
    let digits = !text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<i64>() {
        Ok(seq) if digits => Ok(seq),
        _ => Err(ApiError::bad_request(format!(
            "{what} must be the id of an event of this feed (a decimal number), not {text:?}"
        ))),
    }
}

fn unavailable(err: impl std::fmt::Display) -> ApiError {
    tracing::warn!(%err, "change feed: reading the log failed");
    ApiError::unavailable("the database is unavailable; retry after Retry-After seconds")
}

/// Why a stream ends.
enum End {
    /// The client went, or the gateway is shutting down.
    Closed,
    /// The log no longer holds what the stream needs, or cannot be read.
    Lost,
}

/// One client's stream.
struct Subscriber {
    state: AppState,
    collection: String,
    /// Every entry up to here, of every collection, has been passed on or passed over.
    last: i64,
    out: mpsc::Sender<Bytes>,
    live: broadcast::Receiver<Arc<Event>>,
    /// Events in the batch being gathered, counted in the metrics once it is sent.
    unsent: u64,
}

impl Subscriber {
    async fn run(mut self, first: Vec<Change>) {
        let state = self.state.clone();
        let _counted = state.metrics.feed_subscriber();
        let ended = self.serve(first).await;
        if matches!(ended, End::Lost) {
            tracing::debug!(
                last = self.last,
                "change feed: a stream fell out of the log"
            );
        }
    }

    async fn serve(&mut self, first: Vec<Change>) -> End {
        let feed = self.state.feed.clone();
        let stop = feed.stopped();
        let mut batch = BytesMut::new();
        // The backlog: what the first page held, then page after page until the log's end.
        let mut page = first;
        loop {
            let full = page.len() == usize::try_from(PAGE).unwrap_or(usize::MAX);
            for change in &page {
                self.add(&mut batch, &Event::of(change));
            }
            if let Err(end) = self.flush(&mut batch).await {
                return end;
            }
            if !full {
                break;
            }
            page = match self.read_after().await {
                Ok(page) => page,
                Err(end) => return end,
            };
        }
        let every = Duration::from_millis(self.state.config.changes_heartbeat_ms.max(1));
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let received = tokio::select! {
                () = stop.cancelled() => return End::Closed,
                () = self.out.closed() => return End::Closed,
                _ = heartbeat.tick() => {
                    if let Err(end) = self.send(Bytes::from_static(b": keep-alive\n\n")).await {
                        return end;
                    }
                    continue;
                }
                received = self.live.recv() => received,
            };
            if let Err(end) = self.take(received, &mut batch).await {
                return end;
            }
            // Whatever else is waiting goes in the same write.
            while batch.len() < WRITE_BYTES {
                let received = match self.live.try_recv() {
                    Ok(event) => Ok(event),
                    Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                };
                if let Err(end) = self.take(received, &mut batch).await {
                    return end;
                }
            }
            if !batch.is_empty() {
                heartbeat.reset();
            }
            if let Err(end) = self.flush(&mut batch).await {
                return end;
            }
        }
    }

    /// Adds a live event to `batch`, first reading from the log what came between it and the
    /// last position (after a lag, or for an event the broadcast sent before this stream
    /// subscribed).
    async fn take(
        &mut self,
        received: Result<Arc<Event>, RecvError>,
        batch: &mut BytesMut,
    ) -> Result<(), End> {
        let event = match received {
            Ok(event) => Some(event),
            Err(RecvError::Lagged(_)) => None,
            Err(RecvError::Closed) => return Err(End::Closed),
        };
        let upto = event.as_ref().map(|e| e.seq - 1);
        if event.is_none() || upto.is_some_and(|upto| upto > self.last) {
            self.catch_up(upto, batch).await?;
        }
        if let Some(event) = event {
            self.add(batch, &event);
        }
        Ok(())
    }

    /// Reads the log after the last position, up to `upto` (`None`: to its end).
    async fn catch_up(&mut self, upto: Option<i64>, batch: &mut BytesMut) -> Result<(), End> {
        loop {
            let page = self.read_after().await?;
            let full = page.len() == usize::try_from(PAGE).unwrap_or(usize::MAX);
            for change in page.iter().filter(|c| upto.is_none_or(|u| c.seq <= u)) {
                self.add(batch, &Event::of(change));
                if batch.len() >= WRITE_BYTES {
                    self.flush(batch).await?;
                }
            }
            let reached = upto.is_some_and(|u| self.last >= u);
            if reached || !full {
                return if upto.is_some_and(|u| self.last < u) {
                    // The entries between are not in the log: pruned.
                    Err(End::Lost)
                } else {
                    Ok(())
                };
            }
        }
    }

    async fn read_after(&self) -> Result<Vec<Change>, End> {
        match self
            .state
            .feed
            .db()
            .changes_after(self.last, PAGE, None)
            .await
        {
            Ok(Page::Next(changes)) => Ok(changes),
            Ok(Page::Gone) => Err(End::Lost),
            Err(err) => {
                tracing::warn!(%err, "change feed: reading the log failed");
                Err(End::Lost)
            }
        }
    }

    /// Passes `event` on (if it is of this stream's collection and not seen yet).
    fn add(&mut self, batch: &mut BytesMut, event: &Event) {
        if event.seq <= self.last {
            return;
        }
        self.last = event.seq;
        if event.collection == self.collection {
            batch.extend_from_slice(&event.frame);
            self.unsent += 1;
        }
    }

    async fn flush(&mut self, batch: &mut BytesMut) -> Result<(), End> {
        if batch.is_empty() {
            return Ok(());
        }
        self.send(batch.split().freeze()).await?;
        self.state
            .metrics
            .feed_delivered(std::mem::take(&mut self.unsent));
        Ok(())
    }

    async fn send(&self, bytes: Bytes) -> Result<(), End> {
        let stop = self.state.feed.stopped();
        tokio::select! {
            () = stop.cancelled() => Err(End::Closed),
            sent = self.out.send(bytes) => sent.map_err(|_| End::Closed),
        }
    }
}

/// A body that sends each chunk as the stream's task produces it, and ends when the task does.
pub(crate) struct Chunks(pub(crate) mpsc::Receiver<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn positions_are_decimal_event_ids() {
        let none = HeaderMap::new();
        assert_eq!(position(&none, &[]).ok(), Some(None));
        assert_eq!(
            position(&with("last-event-id", " 17 "), &[]).ok(),
            Some(Some(17))
        );
        let after = [("after".to_owned(), "5".to_owned())];
        assert_eq!(position(&none, &after).ok(), Some(Some(5)));
        // The header wins: it is what a reconnecting browser sends.
        assert_eq!(
            position(&with("last-event-id", "9"), &after).ok(),
            Some(Some(9))
        );
        for bad in ["", "-1", "x", "1e3", "0x10", "99999999999999999999"] {
            let err = parse_position(bad, "Last-Event-ID").unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument, "{bad:?}");
        }
        let unknown = [("since".to_owned(), "5".to_owned())];
        assert!(position(&none, &unknown).is_err());
    }

    #[test]
    fn accept_must_allow_an_event_stream() {
        assert!(check_accept(&HeaderMap::new()).is_ok());
        assert!(check_accept(&with("accept", "text/event-stream")).is_ok());
        assert!(check_accept(&with("accept", "application/json, */*;q=0.1")).is_ok());
        let err = check_accept(&with("accept", "application/vnd.api+json")).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotAcceptable);
    }
}
