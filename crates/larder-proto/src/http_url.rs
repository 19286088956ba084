//! Plain `http://` URLs as larder's own HTTP clients take them (the load generator's `--url`,
//! `larder probe`): where to connect, what to send as `Host`, and the request target.

use std::fmt;

/// Where to connect and what to ask for, from `http://HOST[:PORT]/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `HOST:PORT` to connect to.
    pub addr: String,
    /// The authority as written, for the `Host` header.
    pub host: String,
    /// The request target: the path and query as written (`/` if none).
    pub path: String,
}

impl HttpUrl {
    /// The parts of `url`.
    ///
    /// # Errors
    /// When `url` is not a plain `http://` URL with a host: the problem, in words.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let bad = |problem| Err(UrlError { problem });
        let Some(rest) = url.strip_prefix("http://") else {
            return bad("only http:// URLs are supported");
        };
        if !rest.bytes().all(|b| b.is_ascii_graphic()) {
            return bad("spaces, control and non-ASCII characters must be percent-encoded");
        }
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let (host, path) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if host.is_empty() {
            return bad("it names no host");
        }
        if host.contains('@') {
            return bad("user info is not supported");
        }
        let path = match path.as_bytes().first() {
            None => "/".to_owned(),
            Some(b'?') => format!("/{path}"),
            Some(_) => path.to_owned(),
        };
        Ok(Self {
            addr: with_port(host),
            host: host.to_owned(),
            path,
        })
    }
}

/// `host`, with port 80 when it names none (the colons of an IPv6 literal are not a port's).
fn with_port(host: &str) -> String {
    let has_port = match host.rfind(']') {
        Some(bracket) => host[bracket..].contains(':'),
        None => host.contains(':'),
    };
    if has_port {
        host.to_owned()
    } else {
        format!("{host}:80")
    }
}

/// Why a URL cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlError {
    /// What is wrong with it.
    pub problem: &'static str,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.problem)
    }
}

impl std::error::Error for UrlError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_come_from_plain_http_urls() {
        let target = |url: &str| HttpUrl::parse(url).map(|t| (t.addr, t.host, t.path));
        let own = |a: &str, h: &str, p: &str| (a.to_owned(), h.to_owned(), p.to_owned());
        assert_eq!(
            target("http://127.0.0.1:8091/v1/products/42").unwrap(),
            own("127.0.0.1:8091", "127.0.0.1:8091", "/v1/products/42")
        );
        assert_eq!(
            target("http://example.com").unwrap(),
            own("example.com:80", "example.com", "/")
        );
        assert_eq!(
            target("http://[::1]?a=1#frag").unwrap(),
            own("[::1]:80", "[::1]", "/?a=1")
        );
        assert_eq!(target("http://[::1]:81/x").unwrap().0, "[::1]:81");
        for bad in [
            "https://h/",
            "h:80/x",
            "http:///x",
            "http://u@h/",
            "http://h/a b",
            "http://h/é",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
