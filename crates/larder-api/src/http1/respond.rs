//! Writing responses: the status line, the handler's headers, `content-length`, `date` and
//! `connection` as HTTP/1.1 wants them, then the body.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{StatusCode, header};
use axum::response::Response;

/// What the response says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persist {
    /// HTTP/1.1 keep-alive: nothing to say.
    KeepAlive,
    /// An HTTP/1.0 client that asked to keep the connection: `connection: keep-alive`.
    KeepAliveOld,
    /// The connection closes after this response: `connection: close`.
    Close,
}

impl Persist {
    pub(crate) fn new(keep_alive: bool, minor: u8) -> Self {
        match (keep_alive, minor) {
            (false, _) => Self::Close,
            (true, 0) => Self::KeepAliveOld,
            (true, _) => Self::KeepAlive,
        }
    }

    fn header(self) -> &'static [u8] {
        match self {
            Self::KeepAlive => b"",
            Self::KeepAliveOld => b"connection: keep-alive\r\n",
            Self::Close => b"connection: close\r\n",
        }
    }
}

/// The `date` header line, formatted once a second.
#[derive(Debug, Default)]
pub(crate) struct DateLine {
    second: u64,
    line: Vec<u8>,
}

impl DateLine {
    pub(crate) fn write(&mut self, now: SystemTime, out: &mut Vec<u8>) {
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.line.is_empty() {
            self.second = second;
            self.line.clear();
            self.line.extend_from_slice(b"date: ");
            self.line
                .extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
            self.line.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&self.line);
    }
}

/// Whether a response with `status` carries a body (and so a `content-length`).
fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// Writes the start of a response: status line, `date`, `connection`.
pub(crate) fn status_line(
    status: StatusCode,
    persist: Persist,
    date: &mut DateLine,
    now: SystemTime,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    date.write(now, out);
    out.extend_from_slice(persist.header());
}

/// Writes `content-length: n` and the blank line that ends the head.
pub(crate) fn end_head(length: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Writes a router's response; `head_only` for a `HEAD` request. The body is collected first
/// (the gateway's bodies are whole documents). Returns `false` if the body failed, after which
/// the connection must close because nothing coherent was written.
pub(crate) async fn write(
    response: Response,
    head_only: bool,
    persist: Persist,
    date: &mut DateLine,
    out: &mut Vec<u8>,
) -> bool {
    let (parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return false;
    };
    status_line(parts.status, persist, date, SystemTime::now(), out);
    for (name, value) in &parts.headers {
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
            header::DATE,
        ]
        .contains(name)
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_body(parts.status) {
        out.extend_from_slice(b"\r\n");
        return true;
    }
    // A HEAD answer states the length the GET would have had, when the handler knows it.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let length = match (head_only, declared) {
        (true, Some(declared)) => declared,
        _ => body.len(),
    };
    end_head(length, out);
    if !head_only {
        out.extend_from_slice(&body);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use axum::response::IntoResponse;

    async fn written(response: Response, head_only: bool, persist: Persist) -> String {
        let mut out = Vec::new();
        assert!(
            write(
                response,
                head_only,
                persist,
                &mut DateLine::default(),
                &mut out
            )
            .await
        );
        String::from_utf8(out).unwrap()
    }

    fn without_date(text: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn responses_get_one_length_a_date_and_the_connection_rule() {
        let mut response = (StatusCode::CREATED, "hello").into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        let text = written(response, false, Persist::Close).await;
        assert!(text.starts_with("HTTP/1.1 201 Created\r\ndate: "), "{text}");
        assert!(text.ends_with("\r\n\r\nhello"), "{text}");
        assert_eq!(
            without_date(&text),
            "HTTP/1.1 201 Created\nconnection: close\ncontent-type: text/plain; charset=utf-8\ncontent-length: 5\n\nhello"
        );
    }

    #[tokio::test]
    async fn head_answers_and_bodiless_statuses_send_no_body() {
        let text = written("hello".into_response(), true, Persist::KeepAlive).await;
        assert!(text.ends_with("content-length: 5\r\n\r\n"), "{text}");
        let text = written(
            StatusCode::NOT_MODIFIED.into_response(),
            false,
            Persist::KeepAliveOld,
        )
        .await;
        assert!(!text.contains("content-length"), "{text}");
        assert!(text.contains("connection: keep-alive\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }
}
