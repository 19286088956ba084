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
    pub(crate) fn new(url: &str, pattern: &KeyPattern, timeout: Duration) -> Result<Self, String> {
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
    pub(crate) async fn load(&self, parts: &Parts<'_>) -> Result<Fetched, String> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(self.uri(parts)?)
            .header(ACCEPT, "*/*")
            .body(Full::default())
            .map_err(|err| err.to_string())?;
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
            status => Err(format!("HTTP {}", status.as_u16())),
        }
    }

    /// `PUT`s `value` to the key's URL; the version from the reply's `ETag`, if numeric.
    pub(crate) async fn store(
        &self,
        parts: &Parts<'_>,
        value: &[u8],
    ) -> Result<Option<u64>, String> {
        let request = Request::builder()
            .method(Method::PUT)
            .uri(self.uri(parts)?)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(Bytes::copy_from_slice(value)))
            .map_err(|err| err.to_string())?;
        let response = self.send(request).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        let version = etag_version(response.headers());
        drain(response).await;
        Ok(version)
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, String> {
        self.client
            .request(request)
            .await
            .map_err(|err| error_chain(&err))
    }

    /// The template filled in with `parts`.
    fn uri(&self, parts: &Parts<'_>) -> Result<Uri, String> {
        let mut url = String::with_capacity(128);
        for piece in &self.template {
            match piece {
                Piece::Literal(text) => url.push_str(text),
                Piece::Part(index) => {
                    let (_, bytes) = parts.get(*index).ok_or("the key lacks a part of the url")?;
                    encode_segment(bytes, &mut url);
                }
            }
        }
        Uri::try_from(url).map_err(|err| err.to_string())
    }
}

/// Splits `url` into literals and parts, each of which must be one of `names`.
fn parse_template(url: &str, names: &[&str]) -> Result<Vec<Piece>, String> {
    let scheme = url.get(..8).map(str::to_ascii_lowercase);
    if scheme.as_deref() == Some("https://") {
        return Err("https is not supported (the node has no TLS client): use http://".into());
    }
    if !url
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    {
        return Err("the url must start with http://".into());
    }
    // Parts go in the path or the query only: a key must not choose the host it is sent to.
    let authority_end = url[7..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| at + 7);
    let authority = &url[7..authority_end];
    if authority.contains(['{', '}']) {
        return Err("key parts may appear only in the url's path or query, not its host".into());
    }
    if authority.contains('@') {
        return Err("credentials in the url are not supported".into());
    }
    let mut pieces = Vec::new();
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or("the url has a '{' without '}'")?;
        let name = &rest[open + 1..open + close];
        let index = names.iter().position(|n| *n == name).ok_or_else(|| {
            let known: Vec<String> = names.iter().map(|n| format!("{{{n}}}")).collect();
            format!(
                "the url names an unknown part {{{name}}} (the pattern's parts: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )
        })?;
        pieces.push(Piece::Part(index));
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err("the url has a '}' without '{'".into());
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
    let uri = Uri::try_from(sample).map_err(|err| format!("the url is not valid: {err}"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err("the url needs a host".into());
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
async fn read_body(response: Response<Incoming>) -> Result<Bytes, String> {
    let too_big = || format!("the response body is over {} MiB", MAX_BODY >> 20);
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(too_big());
    }
    match Limited::new(response.into_body(), MAX_BODY).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(too_big()),
        Err(err) => Err(error_chain(&*err)),
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

    fn origin(url: &str) -> Result<HttpOrigin, String> {
        let pattern = KeyPattern::parse("doc/{collection}/{id}")?;
        HttpOrigin::new(url, &pattern, Duration::from_secs(1))
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
        let err = origin("http://h/{collection}/{ident}").unwrap_err();
        assert!(
            err.contains("{ident}") && err.contains("{collection}, {id}"),
            "{err}"
        );
        let err = origin("https://h/{id}").unwrap_err();
        assert!(err.contains("TLS"), "{err}");
        assert!(origin("ftp://h/{id}").unwrap_err().contains("http://"));
        assert!(
            origin("http://{collection}.example/{id}")
                .unwrap_err()
                .contains("host")
        );
        assert!(
            origin("http://user:secret@h/{id}")
                .unwrap_err()
                .contains("credentials")
        );
        assert!(origin("http://h/{id").unwrap_err().contains("'{'"));
        assert!(origin("http://h/id}").unwrap_err().contains("'}'"));
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
        assert!(!err.is_empty() && err.len() <= MAX_MESSAGE * 4, "{err}");
    }
}
