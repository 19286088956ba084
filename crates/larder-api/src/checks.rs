//! Request rules hyper leaves to the application, checked by the server before the router
//! sees a request: an HTTP/1.1 request names exactly one valid `Host` (RFC 9112 §3.2: 400
//! otherwise; HTTP/1.0 may name none, HTTP/2 names its authority in `:authority`), `Expect`
//! is at most `100-continue` (RFC 9110 §10.1.1: 417 otherwise), and a declared body is at most
//! `max_body_bytes`, whatever the route (413, without reading it).

use axum::http::{HeaderMap, Version, header};
use larder_proto::ErrorCode;

use crate::problem::ApiError;

/// Checks a request's version and header fields.
///
/// # Errors
/// The 400 or 417 to answer instead of routing the request.
pub(crate) fn check(
    version: Version,
    headers: &HeaderMap,
    max_body: usize,
) -> Result<(), ApiError> {
    if version <= Version::HTTP_11 {
        let mut hosts = headers.get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) if version == Version::HTTP_11 => {
                return Err(protocol("an HTTP/1.1 request needs a Host header"));
            }
            (Some(_), Some(_)) => return Err(protocol("a request names one Host, not several")),
            (Some(host), None) if !valid_host(host.as_bytes()) => {
                return Err(protocol("the Host header is not host[:port]"));
            }
            _ => {}
        }
    }
    if let Some(length) = headers.get(header::CONTENT_LENGTH)
        && std::str::from_utf8(length.as_bytes())
            .ok()
            .and_then(|l| l.trim().parse::<u64>().ok())
            .is_some_and(|l| l > max_body as u64)
    {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("the body is over {max_body} bytes"),
        ));
    }
    for expect in headers.get_all(header::EXPECT) {
        if !expect
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"100-continue")
        {
            return Err(ApiError::new(
                ErrorCode::ExpectationFailed,
                "the only expectation met here is 100-continue",
            ));
        }
    }
    Ok(())
}

fn protocol(detail: &str) -> ApiError {
    ApiError::new(ErrorCode::Protocol, detail)
}

/// `uri-host [":" port]`: a registered name, an IPv4 address or a bracketed IP literal, and
/// an optional decimal port.
fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if let Some(literal) = value.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &literal[..end];
        if inside.is_empty()
            || !inside
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b":.".contains(&b))
        {
            return false;
        }
        (&b"x"[..], &literal[end + 1..])
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &b""[..]),
        }
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    let reg_name = |b: &u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(b);
    port_ok && !host.is_empty() && host.iter().all(reg_name)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut out = HeaderMap::new();
        for (name, value) in list {
            out.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        out
    }

    #[test]
    fn http11_needs_one_valid_host() {
        let code = |v: Version, h: &[(&str, &str)]| check(v, &headers(h), 10).err().map(|e| e.code);
        assert_eq!(
            code(Version::HTTP_11, &[("host", "example.com:8080")]),
            None
        );
        assert_eq!(code(Version::HTTP_11, &[("host", "[::1]:80")]), None);
        assert_eq!(code(Version::HTTP_11, &[("host", "10.0.0.1")]), None);
        assert_eq!(code(Version::HTTP_10, &[]), None);
        assert_eq!(code(Version::HTTP_2, &[]), None);
        let protocol = Some(ErrorCode::Protocol);
        assert_eq!(code(Version::HTTP_11, &[]), protocol);
        assert_eq!(
            code(Version::HTTP_11, &[("host", "a"), ("host", "b")]),
            protocol
        );
        for bad in ["", "a b", "a:b", "a:123456", "[::1", "[zz]", "a/b", "a@b"] {
            assert_eq!(
                code(Version::HTTP_11, &[("host", bad)]),
                protocol,
                "{bad:?}"
            );
        }
        assert_eq!(
            code(Version::HTTP_11, &[("host", "t"), ("expect", "200-ok")]),
            Some(ErrorCode::ExpectationFailed)
        );
        assert_eq!(
            code(
                Version::HTTP_11,
                &[("host", "t"), ("expect", "100-Continue")]
            ),
            None
        );
        assert_eq!(
            code(Version::HTTP_11, &[("host", "t"), ("content-length", "10")]),
            None
        );
        assert_eq!(
            code(Version::HTTP_2, &[("content-length", "11")]),
            Some(ErrorCode::TooLarge)
        );
    }
}
