//! What a command handler works with: the node, its connection's session, the output buffer,
//! and the error type whose text is the RESP error a client sees.

use std::borrow::Cow;
use std::fmt;

use larder_proto::ErrorCode;
use larder_proto::resp::Protocol;
use larder_proto::resp::encode;
use larder_store::StoreError;

use crate::node::error::OpError;

use super::cmd::origin::Deferred;
use crate::clients::ClientEntry;
use crate::node::Node;

/// Per-connection state that commands read and change.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) protocol: Protocol,
    pub(crate) authed: bool,
    /// Close the connection once the replies so far are written (`QUIT`).
    pub(crate) closing: bool,
}

/// A command's view of the world while it runs.
pub(crate) struct Ctx<'a> {
    pub(crate) node: &'a Node,
    pub(crate) session: &'a mut Session,
    pub(crate) client: &'a ClientEntry,
    pub(crate) out: &'a mut Vec<u8>,
    /// A reply that waits for an origin; the connection finishes it before the next request.
    pub(crate) deferred: Option<Deferred>,
}

/// What a handler returns; an error is written as a RESP error reply.
pub(crate) type CmdResult = Result<(), CmdError>;

/// A failed command: its kind and the text after the RESP prefix (Redis's wording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CmdError {
    pub(crate) code: ErrorCode,
    pub(crate) message: Cow<'static, str>,
}

impl CmdError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn syntax() -> Self {
        Self::new(ErrorCode::InvalidArgument, "syntax error")
    }

    pub(crate) fn not_integer() -> Self {
        Self::new(
            ErrorCode::NotANumber,
            "value is not an integer or out of range",
        )
    }

    pub(crate) fn not_float() -> Self {
        Self::new(ErrorCode::NotANumber, "value is not a valid float")
    }

    pub(crate) fn arity(name: &str) -> Self {
        Self::new(
            ErrorCode::InvalidArgument,
            format!("wrong number of arguments for '{name}' command"),
        )
    }

    pub(crate) fn invalid_expire(name: &str) -> Self {
        Self::new(
            ErrorCode::InvalidArgument,
            format!("invalid expire time in '{name}' command"),
        )
    }
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code.resp_prefix(), self.message)
    }
}

impl From<StoreError> for CmdError {
    fn from(err: StoreError) -> Self {
        OpError::from(err).into()
    }
}

impl From<OpError> for CmdError {
    fn from(err: OpError) -> Self {
        Self::new(err.code(), err.to_string())
    }
}

impl Ctx<'_> {
    pub(crate) fn protocol(&self) -> Protocol {
        self.session.protocol
    }

    pub(crate) fn ok(&mut self) {
        encode::simple(self.out, b"OK");
    }

    pub(crate) fn simple(&mut self, text: &[u8]) {
        encode::simple(self.out, text);
    }

    pub(crate) fn int(&mut self, value: i64) {
        encode::integer(self.out, value);
    }

    pub(crate) fn uint(&mut self, value: u64) {
        encode::integer(self.out, i64::try_from(value).unwrap_or(i64::MAX));
    }

    pub(crate) fn bulk(&mut self, bytes: &[u8]) {
        encode::bulk(self.out, bytes);
    }

    pub(crate) fn null(&mut self) {
        encode::null(self.out, self.session.protocol);
    }

    pub(crate) fn array(&mut self, len: usize) {
        encode::array(self.out, len);
    }

    pub(crate) fn map(&mut self, len: usize) {
        encode::map(self.out, self.session.protocol, len);
    }

    pub(crate) fn set_header(&mut self, len: usize) {
        encode::set(self.out, self.session.protocol, len);
    }

    pub(crate) fn verbatim(&mut self, text: &[u8]) {
        encode::verbatim(self.out, self.session.protocol, b"txt", text);
    }

    /// A bulk string or null.
    pub(crate) fn opt_bulk(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => self.bulk(bytes),
            None => self.null(),
        }
    }
}

/// Parses a decimal `i64` as Redis does (no `+`, no spaces, no leading zeros).
pub(crate) fn parse_i64(arg: &[u8]) -> Result<i64, CmdError> {
    larder_store::parse_i64(arg).ok_or_else(CmdError::not_integer)
}

/// Parses a non-negative integer argument (counts, cursors).
pub(crate) fn parse_u64(arg: &[u8]) -> Result<u64, CmdError> {
    std::str::from_utf8(arg)
        .ok()
        .filter(|s| !s.starts_with('+'))
        .and_then(|s| s.parse().ok())
        .ok_or_else(CmdError::not_integer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_like_redis() {
        for (text, want) in [
            (&b"0"[..], Some(0)),
            (b"-5", Some(-5)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"9223372036854775808", None),
            (b"+1", None),
            (b"01", None),
            (b" 1", None),
            (b"", None),
            (b"-", None),
            (b"1.5", None),
        ] {
            assert_eq!(
                parse_i64(text).ok(),
                want,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn errors_render_with_their_prefix() {
        assert_eq!(CmdError::syntax().to_string(), "ERR syntax error");
        let wrong = CmdError::new(
            ErrorCode::WrongType,
            "Operation against a key holding the wrong kind of value",
        );
        assert!(wrong.to_string().starts_with("WRONGTYPE "));
        assert_eq!(
            CmdError::arity("get").to_string(),
            "ERR wrong number of arguments for 'get' command"
        );
    }
}
