//! The HTTP origin: a URL template such as `http://docs:8080/docs/{collection}/{id}` whose
//! `{part}`s are filled in with the key's parts, percent-encoded so that any bytes stay inside
//! their one path segment. A load is a `GET` (200 found, 404 or 410 not found); a write-through
//! is a `PUT` of the value. The version is read from the `ETag`, and only a numeric one
//! (`"42"`, `W/"42"`) gives a version: any other tag means the origin keeps none.
//!
//! Plain HTTP only: there is no TLS client in the node. One pooled client per origin, which
//! connects on first use, so the node starts while the origin is down.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderMap};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::Fetched;
use super::pattern::{KeyPattern, Parts};

/// The largest body a load accepts.
pub(super) const MAX_BODY: usize = 64 << 20;
/// The most of an unwanted body (a 404's page) read so that its connection can be reused.
const MAX_DRAIN: usize = 64 << 10;
/// The longest origin-supplied text kept in an error message.
pub(super) const MAX_MESSAGE: usize = 200;

/// One piece of a URL template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text copied as written.
    Literal(String),
    /// The key part at this index of the pattern, percent-encoded.
    Part(usize),
}

/// Why an http origin's URL template was refused.
#[derive(Debug, thiserror::Error)]
pub enum HttpUrlError {
    /// `https://`: the node has no TLS client.
    #[error("https is not supported (the node has no TLS client): use http://")]
    Https,
    /// Another scheme, or none.
    #[error("the url must start with http://")]
    NotHttp,
    /// A key part in the host, where a key could choose where it is sent.
    #[error("key parts may appear only in the url's path or query, not its host")]
    PartInHost,
    /// A user name or password in the URL.
    #[error("credentials in the url are not supported")]
    Credentials,
    /// A `{` with no `}` after it.
    #[error("the url has a '{{' without '}}'")]
    Unclosed,
    /// A `}` with no `{` before it.
    #[error("the url has a '}}' without '{{'")]
    Unopened,
    /// A `{part}` the pattern does not have.
    #[error(
        "the url names an unknown part {{{name}}} (the pattern's parts: {})",
        braced_list(.known)
    )]
    UnknownPart {
        /// The name in the URL.
        name: String,
        /// The pattern's parts.
        known: Vec<String>,
    },
    /// The URL does not parse.
    #[error("the url is not valid: {0}")]
    Invalid(hyper::http::uri::InvalidUri),
    /// The URL has no host.
    #[error("the url needs a host")]
    NoHost,
}

/// `names` as `{a}, {b}`, or `none`.
fn braced_list(names: &[String]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    let listed: Vec<String> = names.iter().map(|name| format!("{{{name}}}")).collect();
    listed.join(", ")
}

/// Why a load or a write of an http origin failed. Its text includes its cause's (cut to
/// [`MAX_MESSAGE`] characters where the origin or the network supplied it), so the cause is not
/// also its `source()`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The key's parts do not fill in the template.
    #[error("the key lacks a part of the url")]
    MissingPart,
    /// The filled-in URL does not parse.
    #[error("{0}")]
    Uri(hyper::http::uri::InvalidUri),
    /// The request could not be built.
    #[error("{0}")]
    Request(hyper::http::Error),
    /// The request could not be sent or no response came.
    #[error("{}", error_chain(.0))]
    Send(hyper_util::client::legacy::Error),
    /// The origin answered with a status that is neither success nor "not found".
    #[error("HTTP {}", .0.as_u16())]
    Status(StatusCode),
    /// The response body is larger than [`MAX_BODY`].
    #[error("the response body is over {} MiB", MAX_BODY >> 20)]
    TooBig,
    /// The response body could not be read.
    #[error("{}", error_chain(&**.0))]
    Body(Box<dyn std::error::Error + Send + Sync>),
}

/// An HTTP origin.
#[derive(Debug)]
pub(crate) struct HttpOrigin {
    client: Client<HttpConnector, Full<Bytes>>,
    template: Vec<Piece>,
}

impl HttpOrigin {
    /// An origin for the template `url` over the parts of `pattern`.
    ///
    /// # Errors
    /// The URL is not `http://`, names a part the pattern lacks, puts a part in the host, or
    /// is not a valid URL.
    pub(crate) fn new(
        url: &str,
        pattern: &KeyPattern,
        timeout: Duration,
    ) -> Result<Self, HttpUrlError> {
        let names: Vec<&str> = pattern.names().collect();
        let template = parse_template(url, &names)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        // The timer lets the pool close idle connections (90 s by default).
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self { client, template })
    }

    /// `GET`s the key's URL.
    pub(crate) async fn load(&self, parts: &Parts<'_>) -> Result<Fetched, HttpError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(self.uri(parts)?)
            .header(ACCEPT, "*/*")
            .body(Full::default())
            .map_err(HttpError::Request)?;
        let response = self.send(request).await?;
        match response.status() {
            StatusCode::OK => {
                let version = etag_version(response.headers());
                let value = read_body(response).await?;
                Ok(Fetched::Found { value, version })
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                drain(response).await;
                Ok(Fetched::NotFound)
            }
            status => Err(HttpError::Status(status)),
        }
    }

    /// `PUT`s `value` to the key's URL; the version from the reply's `ETag`, if numeric.
    pub(crate) async fn store(
        &self,
        parts: &Parts<'_>,
        value: &[u8],
    ) -> Result<Option<u64>, HttpError> {
        let request = Request::builder()
            .method(Method::PUT)
            .uri(self.uri(parts)?)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(Bytes::copy_from_slice(value)))
            .map_err(HttpError::Request)?;
        let response = self.send(request).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(HttpError::Status(status));
        }
        let version = etag_version(response.headers());
        drain(response).await;
        Ok(version)
    }

    async fn send(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, HttpError> {
        larder_proto::trace::inject_headers(request.headers_mut());
        self.client.request(request).await.map_err(HttpError::Send)
    }

    /// The template filled in with `parts`.
    fn uri(&self, parts: &Parts<'_>) -> Result<Uri, HttpError> {
        let mut url = String::with_capacity(128);
        for piece in &self.template {
            match piece {
                Piece::Literal(text) => url.push_str(text),
                Piece::Part(index) => {
                    let (_, bytes) = parts.get(*index).ok_or(HttpError::MissingPart)?;
                    encode_segment(bytes, &mut url);
                }
            }
        }
        Uri::try_from(url).map_err(HttpError::Uri)
    }
}

/// Splits `url` into literals and parts, each of which must be one of `names`.
fn parse_template(url: &str, names: &[&str]) -> Result<Vec<Piece>, HttpUrlError> {
    let scheme = url.get(..8).map(str::to_ascii_lowercase);
    if scheme.as_deref() == Some("https://") {
        return Err(HttpUrlError::Https);
    }
    if !url
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    {
        return Err(HttpUrlError::NotHttp);
    }
    // Parts go in the path or the query only: a key must not choose the host it is sent to.
    let authority_end = url[7..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| at + 7);
    let authority = &url[7..authority_end];
    if authority.contains(['{', '}']) {
        return Err(HttpUrlError::PartInHost);
    }
    if authority.contains('@') {
        return Err(HttpUrlError::Credentials);
    }
    let mut pieces = Vec::new();
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..].find('}').ok_or(HttpUrlError::Unclosed)?;
        let name = &rest[open + 1..open + close];
        let index =
            names
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| HttpUrlError::UnknownPart {
                    name: name.to_owned(),
                    known: names.iter().map(|&n| n.to_owned()).collect(),
                })?;
        pieces.push(Piece::Part(index));
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(HttpUrlError::Unopened);
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest.to_owned()));
    }
    // Check the literal text now rather than on every load.
    let sample: String = pieces
        .iter()
        .map(|piece| match piece {
            Piece::Literal(text) => text.as_str(),
            Piece::Part(_) => "x",
        })
        .collect();
    let uri = Uri::try_from(sample).map_err(HttpUrlError::Invalid)?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(HttpUrlError::NoHost);
    }
    Ok(pieces)
}

/// Appends `bytes` percent-encoded as one path segment: every byte but the unreserved
/// `A-Za-z0-9-._~` is escaped, and so is a segment of only dots (`.`, `..`), which servers
/// would otherwise read as "this" or "parent" directory.
fn encode_segment(bytes: &[u8], out: &mut String) {
    let all_dots = bytes.iter().all(|&b| b == b'.');
    for &b in bytes {
        if !all_dots && (b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The version an `ETag` carries: its opaque tag, without `W/` and quotes, if that is a
/// decimal number other than 0. Any other tag gives none.
fn etag_version(headers: &HeaderMap) -> Option<u64> {
    let tag = headers.get(ETAG)?.to_str().ok()?.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    let tag = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tag.parse().ok().filter(|&v| v != 0)
}

/// The whole body, refused past [`MAX_BODY`].
async fn read_body(response: Response<Incoming>) -> Result<Bytes, HttpError> {
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(HttpError::TooBig);
    }
    match Limited::new(response.into_body(), MAX_BODY).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(HttpError::TooBig),
        Err(err) => Err(HttpError::Body(err)),
    }
}

/// Reads a small unwanted body to its end, so the connection goes back to the pool.
async fn drain(response: Response<Incoming>) {
    let _ = Limited::new(response.into_body(), MAX_DRAIN)
        .collect()
        .await;
}

/// An error and its causes, `outer: inner: …`, cut to [`MAX_MESSAGE`] characters.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    with_causes(err.to_string(), err.source())
}

/// `message` followed by each cause in `source`'s chain that it does not already contain,
/// cut to [`MAX_MESSAGE`] characters.
pub(super) fn with_causes(
    mut message: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    shorten(message)
}

/// `message` cut to [`MAX_MESSAGE`] characters.
pub(super) fn shorten(mut message: String) -> String {
    if let Some((at, _)) = message.char_indices().nth(MAX_MESSAGE) {
        message.truncate(at);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn encoded(bytes: &[u8]) -> String {
        let mut out = String::new();
        encode_segment(bytes, &mut out);
        out
    }

    fn origin(url: &str) -> Result<HttpOrigin, HttpUrlError> {
        let pattern = KeyPattern::parse("doc/{collection}/{id}").unwrap();
        HttpOrigin::new(url, &pattern, Duration::from_secs(1))
    }

    /// The reason `url` is refused.
    fn refused(url: &str) -> String {
        origin(url).unwrap_err().to_string()
    }

    #[test]
    fn parts_are_encoded_to_stay_in_one_segment() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain-Text_1.2~", "plain-Text_1.2~"),
            (b"a/b", "a%2Fb"),
            (b"it's here?x=1#y", "it%27s%20here%3Fx%3D1%23y"),
            (b"100%", "100%25"),
            (b"\xff\x00\n", "%FF%00%0A"),
            ("é".as_bytes(), "%C3%A9"),
            (b".", "%2E"),
            (b"..", "%2E%2E"),
            (b"..a", "..a"),
        ];
        for (raw, want) in cases {
            assert_eq!(encoded(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn templates_are_filled_in_pattern_order() {
        let o = origin("http://127.0.0.1:8080/docs/{collection}/{id}?v=1").unwrap();
        let parts: Parts<'_> = vec![("collection", b"my books"), ("id", b"a/b")];
        assert_eq!(
            o.uri(&parts).unwrap().to_string(),
            "http://127.0.0.1:8080/docs/my%20books/a%2Fb?v=1"
        );
        let o = origin("http://h/q?id={id}&c={collection}").unwrap();
        assert_eq!(
            o.uri(&parts).unwrap().to_string(),
            "http://h/q?id=a%2Fb&c=my%20books"
        );
    }

    #[test]
    fn bad_templates_are_refused_with_a_reason() {
        let err = refused("http://h/{collection}/{ident}");
        assert!(
            err.contains("{ident}") && err.contains("{collection}, {id}"),
            "{err}"
        );
        let err = refused("https://h/{id}");
        assert!(err.contains("TLS"), "{err}");
        assert!(refused("ftp://h/{id}").contains("http://"));
        assert!(refused("http://{collection}.example/{id}").contains("host"));
        assert!(refused("http://user:secret@h/{id}").contains("credentials"));
        assert!(refused("http://h/{id").contains("'{'"));
        assert!(refused("http://h/id}").contains("'}'"));
        assert!(origin("http:///{id}").is_err());
        assert!(origin("http://h/a b/{id}").is_err());
        assert!(origin("HTTP://h:1/{id}").is_ok());
    }

    #[test]
    fn only_numeric_etags_give_versions() {
        let cases = [
            ("\"42\"", Some(42)),
            ("W/\"42\"", Some(42)),
            (" 7 ", Some(7)),
            ("\"0\"", None),
            ("\"abc\"", None),
            ("\"+5\"", None),
            ("\"-5\"", None),
            ("\"\"", None),
            ("\"18446744073709551616\"", None),
        ];
        for (tag, want) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(ETAG, HeaderValue::from_static(tag));
            assert_eq!(etag_version(&headers), want, "{tag}");
        }
        assert_eq!(etag_version(&HeaderMap::new()), None);
    }

    #[test]
    fn long_messages_are_cut() {
        assert_eq!(shorten("short".into()), "short");
        let long = shorten("é".repeat(500));
        assert_eq!(long.chars().count(), MAX_MESSAGE + 1);
    }

    #[tokio::test]
    async fn an_origin_that_is_down_is_an_error_not_a_panic() {
        // Construction does not connect; the load does, and fails.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let o = origin(&format!("http://{addr}/{{collection}}/{{id}}")).unwrap();
        let parts: Parts<'_> = vec![("collection", b"c"), ("id", b"1")];
        let err = o.load(&parts).await.unwrap_err();
        assert!(matches!(err, HttpError::Send(_)), "{err:?}");
        let err = err.to_string();
        assert!(!err.is_empty() && err.len() <= MAX_MESSAGE * 4, "{err}");
    }

    #[test]
    fn template_errors_list_the_parts_there_are() {
        assert_eq!(
            refused("http://h/{collection}/{ident}"),
            "the url names an unknown part {ident} (the pattern's parts: {collection}, {id})"
        );
        let bare = KeyPattern::parse("config").unwrap();
        let err = HttpOrigin::new("http://h/{id}", &bare, Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the url names an unknown part {id} (the pattern's parts: none)"
        );
        assert_eq!(refused("http://h/{id"), "the url has a '{' without '}'");
        assert_eq!(refused("http://h/id}"), "the url has a '}' without '{'");
        assert!(refused("http://h/a b/{id}").starts_with("the url is not valid: "));
    }

    #[test]
    fn load_errors_read_as_the_origin_answered() {
        assert_eq!(
            HttpError::Status(StatusCode::SERVICE_UNAVAILABLE).to_string(),
            "HTTP 503"
        );
        assert_eq!(
            HttpError::TooBig.to_string(),
            "the response body is over 64 MiB"
        );
        let io = std::io::Error::other("x".repeat(1_000));
        let long = HttpError::Body(Box::new(io)).to_string();
        assert_eq!(long.chars().count(), MAX_MESSAGE + 1);
    }
}
