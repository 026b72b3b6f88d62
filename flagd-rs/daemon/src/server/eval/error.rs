//! Errors of the evaluation services and their one mapping to gRPC statuses, Connect error
//! codes and HTTP statuses, shared by every transport.

use flagd_evaluator::{ErrorCode, Exceeded};
use serde_json::json;

use crate::selector::SelectorError;

/// The status codes shared by gRPC and Connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The caller cancelled.
    Canceled,
    /// An error with no better code.
    Unknown,
    /// The request is malformed.
    InvalidArgument,
    /// The deadline passed.
    DeadlineExceeded,
    /// The thing asked for does not exist.
    NotFound,
    /// The thing to create exists.
    AlreadyExists,
    /// Not allowed.
    PermissionDenied,
    /// A limit was hit.
    ResourceExhausted,
    /// The system is not in a state to do this.
    FailedPrecondition,
    /// Aborted by a conflict.
    Aborted,
    /// Out of the valid range.
    OutOfRange,
    /// No such method.
    Unimplemented,
    /// An invariant broke.
    Internal,
    /// Try again later.
    Unavailable,
    /// Unrecoverable data loss or corruption.
    DataLoss,
    /// No valid credentials.
    Unauthenticated,
}

impl Code {
    /// The Connect protocol's name for the code (`not_found`, ...).
    pub const fn connect_name(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::Unknown => "unknown",
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Aborted => "aborted",
            Code::OutOfRange => "out_of_range",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::DataLoss => "data_loss",
            Code::Unauthenticated => "unauthenticated",
        }
    }

    /// The HTTP status of a Connect unary error with this code (connect-go's table).
    pub const fn http_status(self) -> u16 {
        match self {
            Code::Canceled => 499,
            Code::Unknown | Code::Internal | Code::DataLoss => 500,
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
            Code::DeadlineExceeded => 504,
            Code::NotFound => 404,
            Code::AlreadyExists | Code::Aborted => 409,
            Code::PermissionDenied => 403,
            Code::ResourceExhausted => 429,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
            Code::Unauthenticated => 401,
        }
    }

    /// The gRPC code.
    pub const fn grpc(self) -> tonic::Code {
        match self {
            Code::Canceled => tonic::Code::Cancelled,
            Code::Unknown => tonic::Code::Unknown,
            Code::InvalidArgument => tonic::Code::InvalidArgument,
            Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            Code::NotFound => tonic::Code::NotFound,
            Code::AlreadyExists => tonic::Code::AlreadyExists,
            Code::PermissionDenied => tonic::Code::PermissionDenied,
            Code::ResourceExhausted => tonic::Code::ResourceExhausted,
            Code::FailedPrecondition => tonic::Code::FailedPrecondition,
            Code::Aborted => tonic::Code::Aborted,
            Code::OutOfRange => tonic::Code::OutOfRange,
            Code::Unimplemented => tonic::Code::Unimplemented,
            Code::Internal => tonic::Code::Internal,
            Code::Unavailable => tonic::Code::Unavailable,
            Code::DataLoss => tonic::Code::DataLoss,
            Code::Unauthenticated => tonic::Code::Unauthenticated,
        }
    }
}

/// Why an evaluation request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// The evaluator reported an error for the flag.
    #[error("{}", flag_message(*.0))]
    Flag(ErrorCode),
    /// The flag's targeting needed more than the evaluation budget allows: flagd's GENERAL
    /// status, with the limit in the message.
    #[error("evaluation budget exceeded: {0}")]
    Budget(Exceeded),
    /// The `Flagd-Selector` header could not be parsed.
    #[error("{0}")]
    Selector(#[from] SelectorError),
    /// The request message could not be decoded.
    #[error("{0}")]
    Malformed(String),
    /// The request body is larger than the configured limit.
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// The stream reached the server-side deadline.
    #[error("{}", crate::server::deadline::SERVER_DEADLINE_MESSAGE)]
    StreamDeadline,
    /// The client's deadline (`grpc-timeout`, `Connect-Timeout-Ms`) passed.
    #[error("{}", crate::server::deadline::DEADLINE_MESSAGE)]
    DeadlineExceeded,
    /// A timeout header that is not a valid timeout.
    #[error("{0}")]
    InvalidTimeout(String),
    /// The request names a compression the server does not support.
    #[error("{0}")]
    UnknownEncoding(String),
}

/// flagd's messages for evaluator errors.
const fn flag_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::FlagNotFound => "Flag not found",
        ErrorCode::TypeMismatch => "Type mismatch error",
        ErrorCode::ParseError => "Error parsing input or configuration",
        ErrorCode::General => "General error",
    }
}

impl From<crate::server::body::BodyError> for RequestError {
    fn from(e: crate::server::body::BodyError) -> Self {
        match e {
            crate::server::body::BodyError::TooLarge(limit) => RequestError::TooLarge(limit),
            crate::server::body::BodyError::Broken(_) => RequestError::Malformed(e.to_string()),
        }
    }
}

impl RequestError {
    /// The status code flagd answers with.
    pub const fn code(&self) -> Code {
        match self {
            RequestError::Flag(ErrorCode::FlagNotFound) => Code::NotFound,
            RequestError::Flag(ErrorCode::TypeMismatch) => Code::InvalidArgument,
            RequestError::Flag(ErrorCode::ParseError) => Code::DataLoss,
            RequestError::Flag(ErrorCode::General) | RequestError::Budget(_) => Code::Unknown,
            RequestError::Selector(_) | RequestError::Malformed(_) => Code::InvalidArgument,
            RequestError::TooLarge(_) => Code::ResourceExhausted,
            RequestError::StreamDeadline | RequestError::DeadlineExceeded => Code::DeadlineExceeded,
            RequestError::InvalidTimeout(_) => Code::InvalidArgument,
            RequestError::UnknownEncoding(_) => Code::Unimplemented,
        }
    }

    /// The Connect error body: `{"code": .., "message": ..}`.
    pub fn connect_json(&self) -> serde_json::Value {
        connect_error_json(self.code(), &self.to_string())
    }
}

/// A Connect error body; the message is omitted when empty, as connect-go does.
pub fn connect_error_json(code: Code, message: &str) -> serde_json::Value {
    if message.is_empty() {
        json!({"code": code.connect_name()})
    } else {
        json!({"code": code.connect_name(), "message": message})
    }
}

impl From<RequestError> for tonic::Status {
    fn from(e: RequestError) -> Self {
        tonic::Status::new(e.code().grpc(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(e: RequestError, connect: &str, grpc: tonic::Code, http: u16, message: &str) {
        assert_eq!(e.code().connect_name(), connect);
        assert_eq!(e.code().http_status(), http);
        let status = tonic::Status::from(e.clone());
        assert_eq!(status.code(), grpc);
        assert_eq!(status.message(), message);
        assert_eq!(
            e.connect_json(),
            json!({"code": connect, "message": message})
        );
    }

    #[test]
    fn flagd_error_table() {
        use tonic::Code as G;
        check(
            RequestError::Flag(ErrorCode::FlagNotFound),
            "not_found",
            G::NotFound,
            404,
            "Flag not found",
        );
        check(
            RequestError::Flag(ErrorCode::TypeMismatch),
            "invalid_argument",
            G::InvalidArgument,
            400,
            "Type mismatch error",
        );
        check(
            RequestError::Flag(ErrorCode::ParseError),
            "data_loss",
            G::DataLoss,
            500,
            "Error parsing input or configuration",
        );
        check(
            RequestError::Flag(ErrorCode::General),
            "unknown",
            G::Unknown,
            500,
            "General error",
        );
        check(
            RequestError::Budget(Exceeded::Operations(10)),
            "unknown",
            G::Unknown,
            500,
            "evaluation budget exceeded: more than 10 operations",
        );
        check(
            RequestError::Selector(SelectorError("team".into())),
            "invalid_argument",
            G::InvalidArgument,
            400,
            "invalid selector key \"team\", valid keys: \"flagSetId\", \"source\"",
        );
        check(
            RequestError::TooLarge(10),
            "resource_exhausted",
            G::ResourceExhausted,
            429,
            "request body exceeds the limit of 10 bytes",
        );
        check(
            RequestError::DeadlineExceeded,
            "deadline_exceeded",
            G::DeadlineExceeded,
            504,
            "deadline exceeded",
        );
        check(
            RequestError::InvalidTimeout("parse timeout: \"x\" has >10 digits".into()),
            "invalid_argument",
            G::InvalidArgument,
            400,
            "parse timeout: \"x\" has >10 digits",
        );
        check(
            RequestError::StreamDeadline,
            "deadline_exceeded",
            G::DeadlineExceeded,
            504,
            "stream closed due to server-side timeout",
        );
    }

    #[test]
    fn connect_http_statuses() {
        let table = [
            (Code::Canceled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, status) in table {
            assert_eq!(code.http_status(), status, "{code:?}");
        }
        assert_eq!(
            connect_error_json(Code::Unknown, ""),
            json!({"code": "unknown"})
        );
    }
}
