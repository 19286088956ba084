//! What an HTTP/1.1 connection of the load generator writes: GET requests for the URL named
//! by `--url` (`larder_proto::http_url`), encoded from two pre-built halves (with an id written
//! between them for `--paths-from`), so that writing one allocates nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use larder_proto::http_url::HttpUrl;

use crate::error::Usage;

/// Digits of the largest `u64`.
const MAX_DIGITS: usize = 20;

/// Ids for `--paths-from`: one counter shared by every connection, wrapping at `count`.
#[derive(Debug, Clone)]
struct Ids {
    next: Arc<AtomicU64>,
    count: u64,
}

/// GET requests for one target, appended to a buffer without allocating.
#[derive(Debug, Clone)]
pub(crate) struct Requests {
    /// `GET PATH` (the id, if any, goes right after it).
    head: Vec<u8>,
    /// ` HTTP/1.1`, the header fields and the blank line.
    tail: Vec<u8>,
    ids: Option<Ids>,
}

impl Requests {
    /// Requests for `target` with the extra `headers` (`Name: value`); with `paths_from`, each
    /// request's path ends with the next id of `0..paths_from`.
    ///
    /// # Errors
    /// When a header is not `Name: value` or would break the request.
    pub(crate) fn new(
        target: &HttpUrl,
        headers: &[String],
        paths_from: Option<u64>,
    ) -> Result<Self, Usage> {
        let mut tail = b" HTTP/1.1\r\n".to_vec();
        let mut has_host = false;
        for header in headers {
            let (name, value) = split_header(header)?;
            has_host |= name.eq_ignore_ascii_case("host");
            tail.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if !has_host {
            tail.extend_from_slice(format!("Host: {}\r\n", target.host).as_bytes());
        }
        tail.extend_from_slice(b"\r\n");
        let ids = paths_from.map(|count| Ids {
            next: Arc::new(AtomicU64::new(0)),
            count: count.max(1),
        });
        Ok(Self {
            head: format!("GET {}", target.path).into_bytes(),
            tail,
            ids,
        })
    }

    /// The longest request [`Self::push`] appends.
    pub(crate) fn max_len(&self) -> usize {
        self.head.len() + MAX_DIGITS + self.tail.len()
    }

    /// Appends the next request to `out`.
    pub(crate) fn push(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        if let Some(ids) = &self.ids {
            let id = ids.next.fetch_add(1, Ordering::Relaxed) % ids.count;
            push_decimal(out, id);
        }
        out.extend_from_slice(&self.tail);
    }
}

/// Splits `Name: value`, refusing what is not a header field or would end one early.
fn split_header(header: &str) -> Result<(&str, &str), Usage> {
    let bad = |problem: String| {
        let header = header.to_owned();
        Err(Usage::Header { header, problem })
    };
    let Some((name, value)) = header.split_once(':') else {
        return bad("it is not `Name: value`".to_owned());
    };
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return bad(format!("{name:?} is not a header name"));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return bad("the value holds a control character".to_owned());
    }
    Ok((name, value))
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; MAX_DIGITS];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_headers_and_sequential_ids() {
        let target = HttpUrl::parse("http://h:1/v1/p/").unwrap();
        let headers = ["Authorization:  Bearer x ".to_owned(), "X-A:b".to_owned()];
        let requests = Requests::new(&target, &headers, Some(12)).unwrap();
        let copy = requests.clone();
        let mut out = Vec::new();
        for _ in 0..6 {
            requests.push(&mut out);
            copy.push(&mut out); // clones share the counter
        }
        let text = String::from_utf8(out).unwrap();
        let one = "HTTP/1.1\r\nAuthorization: Bearer x\r\nX-A: b\r\nHost: h:1\r\n\r\n";
        let expected: String = (0..12).map(|i| format!("GET /v1/p/{i} {one}")).collect();
        assert_eq!(text, expected);
        let mut wrapped = Vec::new();
        requests.push(&mut wrapped);
        assert!(wrapped.starts_with(b"GET /v1/p/0 "));
        assert!(wrapped.len() <= requests.max_len());

        let host = ["host: other".to_owned()];
        let mut out = Vec::new();
        Requests::new(&target, &host, None).unwrap().push(&mut out);
        assert_eq!(out, b"GET /v1/p/ HTTP/1.1\r\nhost: other\r\n\r\n");
        for bad in ["novalue", ": v", "Na me: v", "X: a\r\nY: b", "X: \n"] {
            assert!(
                Requests::new(&target, &[bad.to_owned()], None).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn decimals_are_written_whole() {
        for n in [0, 7, 10, 123_456, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").as_bytes());
        }
    }
}
