//! The error of a RESP command: its [`ErrorCode`] and Redis's wording, written as
//! `-<PREFIX> <text>`.

use std::borrow::Cow;
use std::fmt;

use larder_proto::ErrorCode;
use larder_store::StoreError;

use crate::node::error::OpError;

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

#[cfg(test)]
mod tests {
    use super::*;

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
