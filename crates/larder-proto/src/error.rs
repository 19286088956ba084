//! The one error-code table: every failure any larder wire reports has one [`ErrorCode`], and
//! the code alone decides the RESP error prefix, the gRPC status code, the HTTP status and the
//! RFC 9457 problem type. Timeouts and unreachable dependencies are `UNAVAILABLE`/503, never
//! internal errors.

use tonic::Code;

/// The kind of a failure, as every wire shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A request that is malformed or has arguments that make no sense.
    InvalidArgument,
    /// A command or method that does not exist.
    UnknownCommand,
    /// Bytes that are not the protocol (RESP framing, HTTP framing).
    Protocol,
    /// An operation against a value of the wrong kind.
    WrongType,
    /// An arithmetic operation on a value that is not a number.
    NotANumber,
    /// An arithmetic result outside the representable range.
    Overflow,
    /// A key, value or request larger than a configured limit.
    TooLarge,
    /// No room can be made for the write.
    OutOfMemory,
    /// The thing asked for does not exist.
    NotFound,
    /// The write lost to a concurrent one (version mismatch, key already taken).
    Conflict,
    /// The caller has not authenticated.
    Unauthenticated,
    /// The credentials presented are wrong.
    WrongPassword,
    /// The caller is authenticated but not allowed to do this.
    PermissionDenied,
    /// A dependency (origin, database, peer) cannot be reached or did not answer in time.
    Unavailable,
    /// The server is at a configured limit (connections, concurrency) and sheds the request.
    Overloaded,
    /// A bug or an unexpected failure inside larder.
    Internal,
    /// A document that breaks its collection's schema or the request format's rules.
    ValidationFailed,
    /// A condition the request set (`If-Match`) does not hold.
    PreconditionFailed,
    /// The request must be conditional (`If-Match`) and is not.
    PreconditionRequired,
    /// A request body in a media type the endpoint does not take.
    UnsupportedMediaType,
    /// No acceptable response media type (`Accept`).
    NotAcceptable,
    /// A method the resource does not support.
    MethodNotAllowed,
    /// An idempotency key reused with a different request.
    IdempotencyKeyReused,
    /// A retry while the request with the same idempotency key is still running.
    IdempotencyInFlight,
    /// An HTTP request head over the size or header-count limit.
    HeadersTooLarge,
    /// An HTTP version the server does not speak.
    VersionNotSupported,
    /// An HTTP `Expect` the server cannot meet.
    ExpectationFailed,
    /// The caller is over its rate limit; retry after the time the answer gives.
    RateLimited,
    /// The client did not send what it announced (a request body) in time.
    RequestTimeout,
    /// What was asked for existed but is no longer kept (a change feed position older than
    /// the change log's retention).
    Gone,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 30] = [
        Self::InvalidArgument,
        Self::UnknownCommand,
        Self::Protocol,
        Self::WrongType,
        Self::NotANumber,
        Self::Overflow,
        Self::TooLarge,
        Self::OutOfMemory,
        Self::NotFound,
        Self::Conflict,
        Self::Unauthenticated,
        Self::WrongPassword,
        Self::PermissionDenied,
        Self::Unavailable,
        Self::Overloaded,
        Self::Internal,
        Self::ValidationFailed,
        Self::PreconditionFailed,
        Self::PreconditionRequired,
        Self::UnsupportedMediaType,
        Self::NotAcceptable,
        Self::MethodNotAllowed,
        Self::IdempotencyKeyReused,
        Self::IdempotencyInFlight,
        Self::HeadersTooLarge,
        Self::VersionNotSupported,
        Self::ExpectationFailed,
        Self::RateLimited,
        Self::RequestTimeout,
        Self::Gone,
    ];

    /// The first word of a RESP error reply (`-WRONGTYPE …`), as Redis uses them.
    pub const fn resp_prefix(self) -> &'static str {
        match self {
            Self::WrongType => "WRONGTYPE",
            Self::OutOfMemory => "OOM",
            Self::Unauthenticated => "NOAUTH",
            Self::WrongPassword => "WRONGPASS",
            Self::PermissionDenied => "NOPERM",
            _ => "ERR",
        }
    }

    /// The gRPC status code.
    pub const fn grpc(self) -> Code {
        match self {
            Self::InvalidArgument
            | Self::Protocol
            | Self::TooLarge
            | Self::HeadersTooLarge
            | Self::VersionNotSupported
            | Self::ExpectationFailed => Code::InvalidArgument,
            Self::UnknownCommand => Code::Unimplemented,
            Self::WrongType | Self::NotANumber => Code::FailedPrecondition,
            Self::Overflow | Self::Gone => Code::OutOfRange,
            Self::OutOfMemory | Self::Overloaded | Self::RateLimited => Code::ResourceExhausted,
            Self::RequestTimeout => Code::DeadlineExceeded,
            Self::NotFound => Code::NotFound,
            Self::Conflict => Code::Aborted,
            Self::Unauthenticated | Self::WrongPassword => Code::Unauthenticated,
            Self::PermissionDenied => Code::PermissionDenied,
            Self::Unavailable => Code::Unavailable,
            Self::Internal => Code::Internal,
            Self::ValidationFailed
            | Self::UnsupportedMediaType
            | Self::NotAcceptable
            | Self::IdempotencyKeyReused => Code::InvalidArgument,
            Self::PreconditionFailed | Self::PreconditionRequired => Code::FailedPrecondition,
            Self::MethodNotAllowed => Code::Unimplemented,
            Self::IdempotencyInFlight => Code::Aborted,
        }
    }

    /// The HTTP status.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::InvalidArgument | Self::Protocol => 400,
            Self::Unauthenticated | Self::WrongPassword => 401,
            Self::PermissionDenied => 403,
            Self::NotFound | Self::UnknownCommand => 404,
            Self::Conflict => 409,
            Self::TooLarge => 413,
            Self::WrongType | Self::NotANumber | Self::Overflow => 422,
            Self::OutOfMemory => 507,
            Self::Unavailable | Self::Overloaded => 503,
            Self::Internal => 500,
            Self::ValidationFailed | Self::IdempotencyKeyReused => 422,
            Self::PreconditionFailed => 412,
            Self::PreconditionRequired => 428,
            Self::UnsupportedMediaType => 415,
            Self::NotAcceptable => 406,
            Self::MethodNotAllowed => 405,
            Self::IdempotencyInFlight => 409,
            Self::HeadersTooLarge => 431,
            Self::VersionNotSupported => 505,
            Self::ExpectationFailed => 417,
            Self::RateLimited => 429,
            Self::RequestTimeout => 408,
            Self::Gone => 410,
        }
    }

    /// The stable slug of the problem type; the gateway's problem `type` URI ends with it.
    pub const fn slug(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid-argument",
            Self::UnknownCommand => "unknown-command",
            Self::Protocol => "protocol-error",
            Self::WrongType => "wrong-type",
            Self::NotANumber => "not-a-number",
            Self::Overflow => "overflow",
            Self::TooLarge => "too-large",
            Self::OutOfMemory => "out-of-memory",
            Self::NotFound => "not-found",
            Self::Conflict => "conflict",
            Self::Unauthenticated => "unauthenticated",
            Self::WrongPassword => "wrong-credentials",
            Self::PermissionDenied => "permission-denied",
            Self::Unavailable => "unavailable",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal",
            Self::ValidationFailed => "validation-failed",
            Self::PreconditionFailed => "precondition-failed",
            Self::PreconditionRequired => "precondition-required",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::NotAcceptable => "not-acceptable",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::IdempotencyKeyReused => "idempotency-key-reused",
            Self::IdempotencyInFlight => "idempotency-in-flight",
            Self::HeadersTooLarge => "headers-too-large",
            Self::VersionNotSupported => "version-not-supported",
            Self::ExpectationFailed => "expectation-failed",
            Self::RateLimited => "rate-limited",
            Self::RequestTimeout => "request-timeout",
            Self::Gone => "gone",
        }
    }

    /// A short, human title for problem documents.
    pub const fn title(self) -> &'static str {
        match self {
            Self::InvalidArgument => "Invalid request",
            Self::UnknownCommand => "Unknown command",
            Self::Protocol => "Protocol error",
            Self::WrongType => "Wrong type of value",
            Self::NotANumber => "Value is not a number",
            Self::Overflow => "Arithmetic overflow",
            Self::TooLarge => "Too large",
            Self::OutOfMemory => "Out of memory",
            Self::NotFound => "Not found",
            Self::Conflict => "Conflict",
            Self::Unauthenticated => "Authentication required",
            Self::WrongPassword => "Wrong credentials",
            Self::PermissionDenied => "Permission denied",
            Self::Unavailable => "Service unavailable",
            Self::Overloaded => "Overloaded",
            Self::Internal => "Internal error",
            Self::ValidationFailed => "Validation failed",
            Self::PreconditionFailed => "Precondition failed",
            Self::PreconditionRequired => "Precondition required",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::NotAcceptable => "Not acceptable",
            Self::MethodNotAllowed => "Method not allowed",
            Self::IdempotencyKeyReused => "Idempotency key reused",
            Self::IdempotencyInFlight => "Request in progress",
            Self::HeadersTooLarge => "Request header fields too large",
            Self::VersionNotSupported => "HTTP version not supported",
            Self::ExpectationFailed => "Expectation failed",
            Self::RateLimited => "Too many requests",
            Self::RequestTimeout => "Request timeout",
            Self::Gone => "Gone",
        }
    }

    /// A gRPC status with this code and `message`.
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        tonic::Status::new(self.grpc(), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_unique_and_every_code_maps_somewhere() {
        let mut slugs: Vec<_> = ErrorCode::ALL.iter().map(|c| c.slug()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert_ne!(code.grpc(), Code::Ok, "{code:?}");
            assert!((400..600).contains(&code.http_status()), "{code:?}");
        }
    }

    #[test]
    fn dependency_failures_are_unavailable_never_internal() {
        assert_eq!(ErrorCode::Unavailable.grpc(), Code::Unavailable);
        assert_eq!(ErrorCode::Unavailable.http_status(), 503);
        assert_eq!(ErrorCode::Overloaded.http_status(), 503);
    }

    #[test]
    fn redis_prefixes() {
        assert_eq!(ErrorCode::NotANumber.resp_prefix(), "ERR");
        assert_eq!(ErrorCode::OutOfMemory.resp_prefix(), "OOM");
        assert_eq!(ErrorCode::WrongType.resp_prefix(), "WRONGTYPE");
        assert_eq!(ErrorCode::Unauthenticated.resp_prefix(), "NOAUTH");
    }
}
