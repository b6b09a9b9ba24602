//! The retry policy of spec §4 as a pure decision: given what failed and what has been
//! tried, what happens next. No sockets, no clocks.

use std::time::Duration;

use crate::config::RetryPolicy;
use crate::http::Canned;

/// What went wrong with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The TCP connect failed or timed out: nothing reached the backend.
    Connect,
    /// The connection failed after it was used, before any response byte.
    BeforeResponse {
        /// The connection came from the pool.
        reused: bool,
        /// Some request bytes were handed to the kernel for this attempt.
        sent_any: bool,
    },
}

/// What the exchange has tried so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Backends tried, the current one included.
    pub backends: u32,
    /// Connects tried on the current backend.
    pub connects: u32,
    /// The one fresh-connection retry after a pooled failure was used.
    pub fresh_retry_used: bool,
}

/// The next step after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Connect to the same backend again after this pause.
    SameBackend(Duration),
    /// Open a fresh connection to the same backend now (a pooled one failed).
    FreshConnection,
    /// Try another backend; `mark_down` reports the current one as failed.
    NextBackend {
        /// Report the current backend down (connects exhausted).
        mark_down: bool,
    },
    /// Answer the client with this response.
    GiveUp(Canned),
}

/// Decides the next step. `replayable`: the request is idempotent and lbd still holds
/// all of it, so sending it again cannot do harm.
pub fn decide(policy: &RetryPolicy, tried: &Attempts, failure: Failure, replayable: bool) -> Next {
    let another_backend = tried.backends < policy.max_attempts;
    match failure {
        Failure::Connect => {
            // `same_backend` counts retries: 1 + same_backend connects in all.
            if tried.connects <= policy.same_backend {
                Next::SameBackend(policy.delay)
            } else if another_backend {
                Next::NextBackend { mark_down: true }
            } else {
                Next::GiveUp(Canned::ServiceUnavailable)
            }
        }
        Failure::BeforeResponse { reused, sent_any } => {
            if sent_any && !replayable {
                // It may have reached the backend: never send it twice.
                Next::GiveUp(Canned::BadGateway)
            } else if reused && !tried.fresh_retry_used {
                Next::FreshConnection
            } else if another_backend {
                Next::NextBackend { mark_down: false }
            } else {
                Next::GiveUp(Canned::ServiceUnavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        same_backend: 3,
        delay: Duration::from_millis(10),
        max_attempts: 3,
    };

    #[test]
    fn decisions() {
        let t = |backends, connects, fresh_retry_used| Attempts {
            backends,
            connects,
            fresh_retry_used,
        };
        let before = |reused, sent_any| Failure::BeforeResponse { reused, sent_any };
        let table: &[(Attempts, Failure, bool, Next)] = &[
            (
                t(1, 1, false),
                Failure::Connect,
                false,
                Next::SameBackend(POLICY.delay),
            ),
            (
                t(1, 3, false),
                Failure::Connect,
                false,
                Next::SameBackend(POLICY.delay),
            ),
            (
                t(1, 4, false),
                Failure::Connect,
                false,
                Next::NextBackend { mark_down: true },
            ),
            (
                t(3, 4, false),
                Failure::Connect,
                false,
                Next::GiveUp(Canned::ServiceUnavailable),
            ),
            (
                t(1, 1, false),
                before(true, true),
                true,
                Next::FreshConnection,
            ),
            (
                t(1, 1, true),
                before(true, true),
                true,
                Next::NextBackend { mark_down: false },
            ),
            (
                t(1, 1, false),
                before(false, true),
                true,
                Next::NextBackend { mark_down: false },
            ),
            (
                t(3, 1, false),
                before(false, true),
                true,
                Next::GiveUp(Canned::ServiceUnavailable),
            ),
            // A POST that may have arrived is never sent again, pooled or not.
            (
                t(1, 1, false),
                before(true, true),
                false,
                Next::GiveUp(Canned::BadGateway),
            ),
            (
                t(1, 1, false),
                before(false, true),
                false,
                Next::GiveUp(Canned::BadGateway),
            ),
            // ... but one that provably did not may go elsewhere.
            (
                t(1, 1, false),
                before(true, false),
                false,
                Next::FreshConnection,
            ),
        ];
        for (tried, failure, replayable, want) in table {
            assert_eq!(
                decide(&POLICY, tried, *failure, *replayable),
                *want,
                "{tried:?} {failure:?}"
            );
        }
    }

    #[test]
    fn zero_same_backend_tries_once() {
        let policy = RetryPolicy {
            same_backend: 0,
            ..POLICY
        };
        let tried = Attempts {
            backends: 1,
            connects: 1,
            fresh_retry_used: false,
        };
        assert_eq!(
            decide(&policy, &tried, Failure::Connect, true),
            Next::NextBackend { mark_down: true }
        );
    }
}
