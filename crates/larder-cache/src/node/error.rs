//! Why a node operation failed, whichever wire asked for it. Each failure has one
//! [`ErrorCode`], which each wire renders its own way (a RESP error, a gRPC status).

use std::borrow::Cow;

use larder_proto::ErrorCode;
use larder_store::StoreError;

use crate::origin::OriginError;

/// A failed operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpError {
    /// The store refused (too large, not an integer, overflow, out of memory).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key's origin failed or cannot take the key.
    #[error(transparent)]
    Origin(#[from] OriginError),
    /// A refusal with its own code and text.
    #[error("{message}")]
    Refused {
        /// The kind of refusal.
        code: ErrorCode,
        /// What the client is told.
        message: Cow<'static, str>,
    },
}

impl OpError {
    /// A refusal of kind `code`.
    pub(crate) fn refused(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self::Refused {
            code,
            message: message.into(),
        }
    }

    /// A reply that would pass `max_request`.
    pub(crate) fn reply_too_large() -> Self {
        Self::refused(
            ErrorCode::TooLarge,
            "reply larger than max_request; ask for fewer keys",
        )
    }

    /// The kind of failure, for every wire's error code.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Self::Store(err) => store_code(err),
            Self::Origin(err) => err.code(),
            Self::Refused { code, .. } => *code,
        }
    }
}

/// The code of a store failure.
pub(crate) const fn store_code(err: &StoreError) -> ErrorCode {
    match err {
        StoreError::TooLarge { .. } | StoreError::KeyTooLong(_) => ErrorCode::TooLarge,
        StoreError::NotAnInteger => ErrorCode::NotANumber,
        StoreError::Overflow => ErrorCode::Overflow,
        StoreError::AllPinned => ErrorCode::OutOfMemory,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_keep_redis_prefixes() {
        let err = OpError::from(StoreError::NotAnInteger);
        assert_eq!(err.code().resp_prefix(), "ERR");
        assert_eq!(
            OpError::from(StoreError::AllPinned).code().resp_prefix(),
            "OOM"
        );
        assert_eq!(OpError::reply_too_large().code(), ErrorCode::TooLarge);
    }
}
