//! What can go wrong talking to etcd, and which failures are worth another member.

use tonic::{Code, Status};

/// Why an etcd call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// The settings cannot work (no endpoint, a bad address, unreadable TLS files).
    #[error("invalid etcd settings: {0}")]
    Config(String),
    /// No member answered in time, or none could serve the request (no raft leader, a member
    /// stopping). Nothing can be said about whether a write that got this far was applied.
    #[error("etcd is unavailable: {0}")]
    Unavailable(String),
    /// etcd refused the user name and password, or wants credentials none were given for.
    #[error("etcd refused to authenticate: {0}")]
    Auth(String),
    /// The store revision asked for is older than etcd's last compaction.
    #[error("etcd no longer holds the revision asked for: {0}")]
    Compacted(String),
    /// etcd refused the request for another reason (a request too large, a lease that does
    /// not exist, ...).
    #[error("etcd refused the request ({code:?}): {message}")]
    Rejected {
        /// The gRPC status code.
        code: Code,
        /// etcd's message.
        message: String,
    },
    /// etcd answered something this client does not understand.
    #[error("etcd's answer is not understood: {0}")]
    Protocol(String),
}

impl EtcdError {
    /// Whether the cluster could not be reached or could not serve: worth trying again later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, EtcdError::Unavailable(_))
    }

    /// Whether the error says the lease does not exist (any more).
    pub fn is_lease_not_found(&self) -> bool {
        matches!(self, EtcdError::Rejected { code: Code::NotFound, message } if message.contains("lease not found"))
    }

    /// The error a status that is not worth another attempt stands for.
    pub(super) fn from_status(what: &str, status: &Status) -> EtcdError {
        let message = format!("{what}: {}", status.message());
        match status.code() {
            _ if Failure::of(status) == Failure::Retry => EtcdError::Unavailable(message),
            Code::OutOfRange if status.message().contains("compacted") => {
                EtcdError::Compacted(message)
            }
            Code::Unauthenticated | Code::PermissionDenied => EtcdError::Auth(message),
            Code::InvalidArgument if Failure::of(status) == Failure::Token => {
                EtcdError::Auth(message)
            }
            Code::InvalidArgument if status.message().contains("user name is empty") => {
                EtcdError::Auth(format!(
                    "{message} (etcd has authentication on: give a user and password)"
                ))
            }
            Code::InvalidArgument if status.message().contains("authentication failed") => {
                EtcdError::Auth(message)
            }
            Code::FailedPrecondition
                if status.message().contains("authentication is not enabled") =>
            {
                EtcdError::Auth(format!(
                    "{message} (etcd has authentication off: leave the user and password out)"
                ))
            }
            code => EtcdError::Rejected {
                code,
                message: status.message().to_owned(),
            },
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The member could not serve it (unreachable, stopping, no leader, overloaded): try the
    /// next member.
    Retry,
    /// The token is unknown, expired or stale: authenticate again and retry.
    Token,
    /// etcd's definite answer: no other attempt would change it.
    Final,
}

impl Failure {
    /// Classifies a failed attempt's status.
    pub(super) fn of(status: &Status) -> Failure {
        let message = status.message();
        match status.code() {
            // Transport failures (refused, reset, closed), etcd's "no leader", "leader
            // changed", "request timed out", "too many requests", a cancelled stream.
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted => Failure::Retry,
            Code::Unauthenticated => Failure::Token,
            Code::InvalidArgument if message.contains("revision of auth store is old") => {
                Failure::Token
            }
            _ => Failure::Final,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let check = |status: Status, failure: Failure| {
            assert_eq!(Failure::of(&status), failure, "{status:?}");
        };
        check(Status::unavailable("etcdserver: no leader"), Failure::Retry);
        check(Status::unavailable("transport error"), Failure::Retry);
        check(Status::deadline_exceeded("timeout"), Failure::Retry);
        check(Status::unknown("Service was not ready"), Failure::Retry);
        check(
            Status::unauthenticated("etcdserver: invalid auth token"),
            Failure::Token,
        );
        check(
            Status::invalid_argument("etcdserver: revision of auth store is old"),
            Failure::Token,
        );
        check(
            Status::invalid_argument("etcdserver: request is too large"),
            Failure::Final,
        );
        check(
            Status::out_of_range("etcdserver: mvcc: required revision has been compacted"),
            Failure::Final,
        );
    }

    #[test]
    fn final_statuses_become_typed_errors() {
        let compacted =
            Status::out_of_range("etcdserver: mvcc: required revision has been compacted");
        assert!(matches!(
            EtcdError::from_status("range", &compacted),
            EtcdError::Compacted(_)
        ));
        let lease = Status::not_found("etcdserver: requested lease not found");
        assert!(EtcdError::from_status("lease revoke", &lease).is_lease_not_found());
        let empty = Status::invalid_argument("etcdserver: user name is empty");
        let err = EtcdError::from_status("put", &empty);
        assert!(matches!(err, EtcdError::Auth(_)), "{err}");
        assert!(err.to_string().contains("give a user"), "{err}");
        let bad = Status::invalid_argument(
            "etcdserver: authentication failed, invalid user ID or password",
        );
        assert!(matches!(
            EtcdError::from_status("authenticate", &bad),
            EtcdError::Auth(_)
        ));
        let large = Status::invalid_argument("etcdserver: request is too large");
        assert!(matches!(
            EtcdError::from_status("txn", &large),
            EtcdError::Rejected {
                code: Code::InvalidArgument,
                ..
            }
        ));
        assert!(EtcdError::from_status("txn", &Status::unavailable("x")).is_unavailable());
    }
}
