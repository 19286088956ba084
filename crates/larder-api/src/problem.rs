//! Every error the gateway answers, as an RFC 9457 problem document
//! (`application/problem+json`): a `type` URI per kind (`/problems/<slug>`, from the one
//! `ErrorCode` table), `title`, `status`, `detail`, and for validation failures a list of
//! JSON Pointers into the request document. Server-side failures are logged once and shown
//! without internals.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use larder_proto::ErrorCode;
use serde::Serialize;

/// The media type of problem documents.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// One failed rule in a request document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct FieldError {
    /// JSON Pointer into the request document.
    pub(crate) pointer: String,
    pub(crate) detail: String,
}

/// An error answered as a problem document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) detail: String,
    pub(crate) errors: Vec<FieldError>,
    /// Seconds for `Retry-After` (503s).
    pub(crate) retry_after: Option<u64>,
    /// Methods for `Allow` (405s).
    pub(crate) allow: Option<&'static str>,
    /// More fields for the answer (`WWW-Authenticate`, `RateLimit`, …).
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

/// A handler's result.
pub(crate) type ApiResult<T = Response> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            allow: None,
            headers: Vec::new(),
        }
    }

    /// The error with one more field in its answer.
    pub(crate) fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, detail)
    }

    /// A request document that breaks a rule at `pointer`.
    pub(crate) fn invalid_at(pointer: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self {
            errors: vec![FieldError {
                pointer: pointer.to_owned(),
                detail: detail.clone(),
            }],
            ..Self::new(ErrorCode::InvalidArgument, detail)
        }
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    /// The database cannot be reached: retry shortly.
    pub(crate) fn unavailable(detail: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(ErrorCode::Unavailable, detail)
        }
    }

    /// The `type` URI of a problem kind.
    pub(crate) fn type_uri(code: ErrorCode) -> String {
        format!("/problems/{}", code.slug())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.http_status();
        // A 505 is the client's doing; other 5xx are the server's and worth a line.
        if status >= 500 && self.code != ErrorCode::VersionNotSupported {
            tracing::warn!(code = self.code.slug(), detail = %self.detail, "request failed");
        }
        // Internals of server-side failures stay in the log.
        let detail = if self.code == ErrorCode::Internal {
            "the server failed; the error was logged"
        } else {
            &self.detail
        };
        let body = Body {
            kind: Self::type_uri(self.code),
            title: self.code.title(),
            status,
            detail,
            errors: &self.errors,
        };
        let text = serde_json::to_string(&body).unwrap_or_default();
        let mut response = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            text,
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.code == ErrorCode::Unauthenticated {
            // RFC 9110 §15.5.2: a 401 names the scheme that would work.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"larder\""),
            );
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

/// A short description of every problem type, served at `/problems/<slug>`.
pub(crate) fn describe(slug: &str) -> Option<(ErrorCode, &'static str)> {
    let code = ErrorCode::ALL.into_iter().find(|c| c.slug() == slug)?;
    let text = match code {
        ErrorCode::InvalidArgument => {
            "The request is malformed: bad JSON, unknown members, bad query parameters."
        }
        ErrorCode::ValidationFailed => {
            "The document breaks the collection's JSON Schema; `errors` lists JSON Pointers."
        }
        ErrorCode::NotFound => "No such collection, document or route.",
        ErrorCode::Conflict => "The id is taken, or the document's `type` is not the collection's.",
        ErrorCode::PreconditionFailed => "`If-Match` names a version the document no longer has.",
        ErrorCode::PreconditionRequired => {
            "This collection needs `If-Match` on updates and deletes."
        }
        ErrorCode::UnsupportedMediaType => {
            "Send `application/vnd.api+json` (no parameters) or `application/json`."
        }
        ErrorCode::NotAcceptable => "`Accept` allows no media type this API answers with.",
        ErrorCode::MethodNotAllowed => "The route exists but not with this method; see `Allow`.",
        ErrorCode::IdempotencyKeyReused => {
            "The `Idempotency-Key` was used before with a different request."
        }
        ErrorCode::IdempotencyInFlight => {
            "A request with this `Idempotency-Key` is still being processed; retry later."
        }
        ErrorCode::TooLarge => "The request body is larger than the configured limit.",
        ErrorCode::Unavailable => {
            "The database cannot be reached; retry after `Retry-After` seconds."
        }
        ErrorCode::Overloaded => {
            "Too many requests in progress, or the request took too long; retry later."
        }
        ErrorCode::Unauthenticated => {
            "Send `Authorization: Bearer <credential>`: the gateway's token, an API key, or a \
             JWT its keys verify (`WWW-Authenticate` says whether the one sent was invalid)."
        }
        ErrorCode::PermissionDenied => {
            "The credential is valid but lacks the scope this request needs \
             (`<collection>:read`, `<collection>:write` or `admin`; `WWW-Authenticate` names it)."
        }
        ErrorCode::RateLimited => {
            "The credential is over its rate limit; retry after `Retry-After` seconds \
             (`RateLimit` and `RateLimit-Policy` describe the limit)."
        }
        ErrorCode::RequestTimeout => {
            "The request body did not arrive within the gateway's client timeout."
        }
        ErrorCode::Protocol => {
            "The request is not HTTP the server can read without guessing: an HTTP/1.1 \
             request without exactly one valid `Host`, or a malformed body framing."
        }
        ErrorCode::ExpectationFailed => "`Expect` may only be `100-continue`.",
        ErrorCode::Gone => {
            "The change feed no longer holds the events after this `Last-Event-ID` (they are \
             older than the log's retention): read the collection again and follow the feed \
             from now."
        }
        _ => "See the title.",
    };
    Some((code, text))
}
