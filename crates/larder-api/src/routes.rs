//! The document routes: `/v1/{collection}` (list, create) and `/v1/{collection}/{id}` (read,
//! update, delete), in the JSON:API format with ETags, conditional requests and idempotent
//! creates.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use larder_proto::ErrorCode;

use crate::cache::ReadError;
use crate::conditional;
use crate::config::{CollectionConfig, Consistency};
use crate::db::{DbError, IdemRecord};
use crate::doc::{self, Incoming};
use crate::list::{self, ListQuery};
use crate::media::{self, JSON_API};
use crate::peers::Note;
use crate::problem::{ApiError, ApiResult};
use crate::state::{AppState, Collection, InFlight};
use crate::time::rfc3339;

/// Tries an optimistic update this many times before answering 503.
const UPDATE_ATTEMPTS: usize = 5;

/// A JSON:API response.
fn document(status: StatusCode, body: String, etag: Option<i64>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_API));
    if let Some(version) = etag {
        headers.insert(header::ETAG, etag_value(version));
    }
    response
}

/// `"<version>"`.
fn etag_value(version: i64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(version).as_bytes();
    let mut tag = [b'"'; 24];
    tag[1..=digits.len()].copy_from_slice(digits);
    HeaderValue::from_bytes(&tag[..digits.len() + 2]).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// The collection and id of a request for `/v1/{collection}/{id}` (the route guarantees the
/// shape), percent-decoded as the router would decode them.
fn doc_path(path: &str) -> ApiResult<(Cow<'_, str>, Cow<'_, str>)> {
    path.strip_prefix("/v1/")
        .and_then(|rest| rest.split_once('/'))
        .map(|(name, id)| {
            (
                crate::auth::percent_decode(name),
                crate::auth::percent_decode(id),
            )
        })
        .ok_or_else(|| ApiError::not_found(format!("no route {path}")))
}

fn path<T>(path: Result<Path<T>, PathRejection>) -> ApiResult<T> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::not_found(format!("no such route: {e}")))
}

/// Checks `If-Match` against the current version (strong comparison, every tag of the list);
/// `require` answers 428 without one.
fn if_match(headers: &HeaderMap, version: i64, require: bool) -> ApiResult<()> {
    match conditional::condition(headers, &header::IF_MATCH) {
        None if require => Err(precondition_required()),
        None => Ok(()),
        Some(condition) if condition.matches_strong(version) => Ok(()),
        Some(_) => Err(ApiError::new(
            ErrorCode::PreconditionFailed,
            format!("the document is at version {version}; If-Match names another"),
        )),
    }
}

fn precondition_required() -> ApiError {
    ApiError::new(
        ErrorCode::PreconditionRequired,
        "this collection needs If-Match with the document's ETag",
    )
}

/// Reads the body, refusing one over the limit with 413 (without reading it when its declared
/// length is over), one that does not arrive within the client timeout with 408, and one whose
/// framing breaks off with 400.
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> ApiResult<Bytes> {
    let limit = state.config.max_body_bytes;
    // The rest of the body stays unread: on HTTP/1 the connection ends with this answer.
    let too_large = || {
        ApiError::new(
            ErrorCode::TooLarge,
            format!("the body is over {limit} bytes"),
        )
        .with_header(header::CONNECTION, HeaderValue::from_static("close"))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let timeout = Duration::from_millis(state.config.client_timeout_ms.clamp(1, 86_400_000));
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(err)) => {
            let err = err.into_inner();
            if err.is::<http_body_util::LengthLimitError>() {
                Err(too_large())
            } else {
                Err(ApiError::new(
                    ErrorCode::Protocol,
                    format!("the request body could not be read: {err}"),
                )
                .with_header(header::CONNECTION, HeaderValue::from_static("close")))
            }
        }
        Err(_) => {
            state.metrics.record_client_timeout();
            Err(ApiError::new(
                ErrorCode::RequestTimeout,
                "the request body did not arrive in time",
            ))
        }
    }
}

/// Refuses attributes PostgreSQL cannot store: U+0000 in a string would make every sorted or
/// filtered list of the collection fail.
fn storable(
    state: &AppState,
    attributes: &serde_json::Map<String, serde_json::Value>,
) -> ApiResult<()> {
    let nul = attributes
        .iter()
        .any(|(k, v)| k.contains('\0') || doc::has_nul(v));
    if nul && !state.db.is_sqlite() {
        return Err(ApiError::invalid_at(
            "/data/attributes",
            "strings cannot hold U+0000 in this database",
        ));
    }
    Ok(())
}

/// The database failed: the cause goes to the log, the client learns only to retry.
fn unavailable(err: impl std::fmt::Display) -> ApiError {
    tracing::warn!(%err, "database call failed");
    ApiError::unavailable("the database is unavailable; retry after Retry-After seconds")
}

fn db_error(err: DbError) -> ApiError {
    match err {
        DbError::Conflict => ApiError::new(ErrorCode::Conflict, "a document with this id exists"),
        other => unavailable(other),
    }
}

/// `GET /v1/{collection}/{id}`: the commonest request, so it takes the request itself (no
/// copied headers, no path or query extraction unless there is a query).
pub(crate) async fn read(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> ApiResult {
    let headers = request.headers();
    media::check_accept(headers)?;
    let (name, id) = doc_path(request.uri().path())?;
    let collection = state.collection(&name)?;
    let fields = match request.uri().query() {
        None => None,
        Some(_) => single_fields(Query::try_from_uri(request.uri()), &name)?,
    };
    if !doc::valid_id(&id) {
        return Err(ApiError::not_found(format!("no document {id:?} in {name}")));
    }
    let found = state
        .cache
        .read(&collection.config, &id)
        .await
        .map_err(|ReadError::Unavailable| ApiError::unavailable("the database is unavailable"))?;
    let Some(cached) = found else {
        return Err(ApiError::not_found(format!("no document {id:?} in {name}")));
    };
    if conditional::condition(headers, &header::IF_NONE_MATCH)
        .is_some_and(|condition| condition.matches_weak(cached.version))
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response
            .headers_mut()
            .insert(header::ETAG, etag_value(cached.version));
        return Ok(response);
    }
    let stored = std::str::from_utf8(&cached.doc)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "a stored document is not UTF-8"))?;
    let body = match fields {
        Some(fields) => doc::single(&doc::sparse(stored, &fields), &name, &id),
        None => doc::single(stored, &name, &id),
    };
    Ok(document(StatusCode::OK, body, Some(cached.version)))
}

/// The only query parameter a single read takes: `fields[type]`.
fn single_fields(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    name: &str,
) -> ApiResult<Option<Vec<String>>> {
    let Query(pairs) = query.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut fields = None;
    for (key, value) in pairs {
        if key == format!("fields[{name}]") {
            fields = Some(list::field_list(&value));
        } else {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {key:?}"
            )));
        }
    }
    Ok(fields)
}

/// `GET /v1/{collection}`.
pub(crate) async fn list(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    media::check_accept(&headers)?;
    let name = path(p)?;
    let collection = state.collection(&name)?;
    let Query(pairs) = query.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let q = ListQuery::parse(pairs, &collection.config)?;
    q.check_cursor(state.db.is_sqlite())?;
    let (rows, next, total) = list::page(&state.db, &collection.config, &q)
        .await
        .map_err(db_error)?;
    let mut body =
        String::with_capacity(rows.iter().map(|(_, d)| d.len() + 1).sum::<usize>() + 128);
    body.push_str("{\"data\":[");
    for (i, (_, stored)) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        match &q.fields {
            Some(fields) => body.push_str(&doc::sparse(stored, fields)),
            None => body.push_str(stored),
        }
    }
    body.push_str("],\"links\":{\"self\":");
    body.push_str(&serde_json::Value::String(list::self_link(&collection.config, &q)).to_string());
    if let Some(next) = next {
        body.push_str(",\"next\":");
        body.push_str(&serde_json::Value::String(next).to_string());
    }
    body.push('}');
    if let Some(total) = total {
        body.push_str(&format!(",\"meta\":{{\"total\":{total}}}"));
    }
    body.push(',');
    body.push_str(doc::JSON_API_MEMBER);
    body.push('}');
    Ok(document(StatusCode::OK, body, None))
}

/// `POST /v1/{collection}`.
pub(crate) async fn create(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    media::check_accept(&headers)?;
    let name = path(p)?;
    let collection = state.collection(&name)?;
    media::check_content_type(&headers)?;
    let body = read_body(&state, &headers, body).await?;
    let Some(key) = idempotency_key(&headers)? else {
        return create_now(&state, &collection, &body, None).await;
    };
    let fingerprint = fingerprint(&name, &body);
    let Some(_running) = InFlight::enter(&state, &name, &key) else {
        return Err(ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                ErrorCode::IdempotencyInFlight,
                "a request with this Idempotency-Key is still being processed",
            )
        });
    };
    if let Some(record) = state
        .db
        .idempotency(&name, &key, state.now_ms())
        .await
        .map_err(db_error)?
    {
        return replay(&record, &fingerprint);
    }
    match create_now(&state, &collection, &body, Some((&key, &fingerprint))).await {
        // Another gateway recorded the key first: answer as it did.
        Err(e) if e.code == ErrorCode::IdempotencyInFlight => {
            match state
                .db
                .idempotency(&name, &key, state.now_ms())
                .await
                .map_err(db_error)?
            {
                Some(record) => replay(&record, &fingerprint),
                None => Err(e),
            }
        }
        other => other,
    }
}

/// The `Idempotency-Key` header, checked: 1–255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default().trim().trim_matches('"');
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "Idempotency-Key must be 1-255 visible ASCII characters",
        ));
    }
    Ok(Some(key.to_owned()))
}

/// What identifies a request's content: two FNV-1a hashes of the collection and body.
fn fingerprint(collection: &str, body: &[u8]) -> String {
    let fnv = |seed: u64| {
        let mut h = seed;
        for &b in collection.as_bytes().iter().chain(b"\0").chain(body) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    format!(
        "{:016x}{:016x}{:x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x8422_2325_cbf2_9ce4),
        body.len()
    )
}

/// The recorded response of an idempotent request, or 422 for a different request.
fn replay(record: &IdemRecord, fingerprint: &str) -> ApiResult {
    if record.fingerprint != fingerprint {
        return Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used with a different request",
        ));
    }
    let status = StatusCode::from_u16(record.status).unwrap_or(StatusCode::CREATED);
    let mut response = document(status, record.body.clone(), None);
    let headers = response.headers_mut();
    for (name, value) in [
        (header::LOCATION, &record.location),
        (header::ETAG, &record.etag),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    Ok(response)
}

async fn create_now(
    state: &AppState,
    collection: &Arc<Collection>,
    body: &[u8],
    idem: Option<(&str, &str)>,
) -> ApiResult {
    let name = &collection.config.name;
    let Incoming { id, attributes } = doc::parse(body, name, None)?;
    crate::feed::reserved(id.as_deref())?;
    storable(state, &attributes)?;
    if let Some(schema) = &collection.schema {
        schema.check(&attributes)?;
    }
    let id = id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let now = rfc3339(state.now_ms());
    let stored = doc::render(name, &id, &attributes, 1, &now, &now);
    let location = doc::self_link(name, &id);
    let record = IdemRecord {
        fingerprint: idem.map(|(_, f)| f.to_owned()).unwrap_or_default(),
        status: 201,
        location: location.clone(),
        etag: "\"1\"".into(),
        body: doc::single(&stored, name, &id),
    };
    let expires = state.now_ms().saturating_add(
        i64::try_from(state.config.idempotency_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    );
    let idem_row = idem.map(|(key, _)| (key, &record, expires));
    let note = state.note(&collection.config, &id, 1);
    let created = state
        .db
        .create(
            name,
            &id,
            &stored,
            &now,
            idem_row,
            note.as_ref().map(Note::payload),
        )
        .await;
    match created {
        Ok(()) => {}
        Err(DbError::Conflict) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("{name}/{id} exists already"),
            ));
        }
        Err(DbError::KeyTaken) => {
            return Err(ApiError::new(
                ErrorCode::IdempotencyInFlight,
                "recorded elsewhere",
            ));
        }
        Err(err) => return Err(unavailable(err)),
    }
    state.cache_write(collection, &id, stored, 1, note).await;
    let mut response = document(StatusCode::CREATED, record.body, Some(1));
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `PATCH /v1/{collection}/{id}`: top-level attributes given replace those stored.
pub(crate) async fn update(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    media::check_accept(&headers)?;
    let (name, id) = path(p)?;
    let collection = state.collection(&name)?;
    media::check_content_type(&headers)?;
    let require = collection.config.require_if_match;
    if require && !headers.contains_key(header::IF_MATCH) {
        return Err(precondition_required());
    }
    let body = read_body(&state, &headers, body).await?;
    let incoming = doc::parse(&body, &name, Some(&id))?;
    storable(&state, &incoming.attributes)?;
    for _ in 0..UPDATE_ATTEMPTS {
        let Some(current) = state.db.get(&name, &id).await.map_err(db_error)? else {
            return Err(ApiError::not_found(format!("no document {id:?} in {name}")));
        };
        if_match(&headers, current.version, require)?;
        let Some((mut attributes, created)) = doc::unpack(&current.doc) else {
            return Err(ApiError::new(
                ErrorCode::Internal,
                "a stored document does not parse",
            ));
        };
        attributes.extend(incoming.attributes.clone());
        if let Some(schema) = &collection.schema {
            schema.check(&attributes)?;
        }
        let now = rfc3339(state.now_ms());
        let version = current.version + 1;
        let stored = doc::render(&name, &id, &attributes, version, &created, &now);
        let note = state.note(&collection.config, &id, version);
        if state
            .db
            .update(
                &name,
                &id,
                current.version,
                &stored,
                &now,
                note.as_ref().map(Note::payload),
            )
            .await
            .map_err(db_error)?
        {
            let body = doc::single(&stored, &name, &id);
            state
                .cache_write(&collection, &id, stored, version, note)
                .await;
            return Ok(document(StatusCode::OK, body, Some(version)));
        }
        // Another writer got there first: with If-Match that is a failed precondition,
        // without it, merge into the newer document.
        if headers.contains_key(header::IF_MATCH) {
            return Err(ApiError::new(
                ErrorCode::PreconditionFailed,
                "the document changed meanwhile",
            ));
        }
    }
    Err(ApiError::unavailable("the document kept changing; retry"))
}

/// `DELETE /v1/{collection}/{id}`. With `If-Match`, the document is read first and deleted
/// only at the version that matched, so a write in between answers 412.
pub(crate) async fn delete(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let (name, id) = path(p)?;
    let collection = state.collection(&name)?;
    if !doc::valid_id(&id) {
        return Err(ApiError::not_found(format!("no document {id:?} in {name}")));
    }
    let require = collection.config.require_if_match;
    let expected = match conditional::condition(&headers, &header::IF_MATCH) {
        None if require => return Err(precondition_required()),
        None => None,
        Some(_) => {
            let Some(current) = state.db.get(&name, &id).await.map_err(db_error)? else {
                return Err(ApiError::not_found(format!("no document {id:?} in {name}")));
            };
            if_match(&headers, current.version, require)?;
            Some(current.version)
        }
    };
    let note = state.note(&collection.config, &id, 0);
    if state
        .db
        .delete(&name, &id, expected, note.as_ref().map(Note::payload))
        .await
        .map_err(db_error)?
    {
        state.cache.remove(&collection.config, &id).await;
        state.settle(note).await;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    match expected {
        Some(_) => Err(ApiError::new(
            ErrorCode::PreconditionFailed,
            "the document changed meanwhile; If-Match names a version it no longer has",
        )),
        None => Err(ApiError::not_found(format!("no document {id:?} in {name}"))),
    }
}

impl AppState {
    /// The note announcing a write of `id` at `version` (0: a delete) to the other gateways
    /// over the database, if this gateway has peers ([`crate::peers`]).
    pub(crate) fn note(
        &self,
        collection: &CollectionConfig,
        id: &str,
        version: i64,
    ) -> Option<Note> {
        let strong = collection.consistency == Consistency::Strong;
        let peers = self.peers.as_ref()?;
        Some(peers.note(&collection.name, id, version, strong))
    }

    /// Waits, after a committed write, until no other gateway can serve an older copy
    /// (`strong`; at once for `eventual`).
    pub(crate) async fn settle(&self, note: Option<Note>) {
        if let (Some(peers), Some(note)) = (&self.peers, note) {
            peers.settle(note).await;
        }
    }

    /// Updates the cache after a committed write, before answering (`strong`) or right after
    /// (`eventual`), then waits for the other gateways as [`AppState::settle`].
    pub(crate) async fn cache_write(
        &self,
        collection: &Arc<Collection>,
        id: &str,
        doc: String,
        version: i64,
        note: Option<Note>,
    ) {
        if note.is_some() && self.cache.client().is_none() {
            // Other gateways write too: a copy stored now could land after a newer write's
            // copy was dropped, so it is dropped instead, and the next read loads it.
            self.cache.forget_local(&collection.config.name, id);
            return self.settle(note).await;
        }
        self.write_through(collection, id, doc, version).await;
        self.settle(note).await;
    }

    /// Stores a committed write in the cache: before answering (`strong`) or right after
    /// (`eventual`).
    async fn write_through(
        &self,
        collection: &Arc<Collection>,
        id: &str,
        doc: String,
        version: i64,
    ) {
        match collection.config.consistency {
            Consistency::Strong => self.cache.put(&collection.config, id, &doc, version).await,
            Consistency::Eventual => {
                let (cache, config, id) =
                    (self.cache.clone(), collection.config.clone(), id.to_owned());
                tokio::spawn(async move { cache.put(&config, &id, &doc, version).await });
            }
        }
    }
}
