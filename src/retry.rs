//! The retry policy of spec §4 as a pure decision: given what failed and what has been
//! tried, what happens next, and whether the backend is to be reported down. No sockets,
//! no clocks, no configuration types: the caller hands in the numbers.

use crate::fault::Fault;

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

/// How much retrying the configuration allows (`[retry]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Connect retries on one backend (`retry.same_backend`).
    pub same_backend: u32,
    /// Backends tried for one request (`retry.max_attempts`).
    pub max_attempts: u32,
}

/// The next step after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Connect to the same backend again after the configured delay.
    SameBackend,
    /// Open a fresh connection to the same backend now (a pooled one failed).
    FreshConnection,
    /// Try another backend.
    OtherBackend,
    /// Stop trying: answer the client for this fault.
    GiveUp(Fault),
}

/// A decision: the next step, and whether to report the backend down now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What the exchange does next.
    pub next: Next,
    /// Connects to this backend are exhausted: report it down, whatever comes next
    /// (passive marking must not depend on whether another backend may be tried).
    pub mark_down: bool,
}

/// Decides the next step. `replayable`: the request is idempotent and lbd still holds
/// all of it, so sending it again cannot do harm.
pub fn decide(budget: Budget, tried: &Attempts, failure: Failure, replayable: bool) -> Decision {
    let another_backend = tried.backends < budget.max_attempts;
    match failure {
        Failure::Connect => {
            // `same_backend` counts retries: 1 + same_backend connects in all.
            let exhausted = tried.connects > budget.same_backend;
            let next = if !exhausted {
                Next::SameBackend
            } else if another_backend {
                Next::OtherBackend
            } else {
                Next::GiveUp(Fault::NoBackend)
            };
            Decision {
                next,
                mark_down: exhausted,
            }
        }
        Failure::BeforeResponse { reused, sent_any } => {
            let next = if sent_any && !replayable {
                // It may have reached the backend: never send it twice.
                Next::GiveUp(Fault::NotResent)
            } else if reused && !tried.fresh_retry_used {
                Next::FreshConnection
            } else if another_backend {
                Next::OtherBackend
            } else {
                Next::GiveUp(Fault::NoBackend)
            };
            Decision {
                next,
                mark_down: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Budget = Budget {
        same_backend: 3,
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
        let go = |next| Decision {
            next,
            mark_down: false,
        };
        let down = |next| Decision {
            next,
            mark_down: true,
        };
        let table: &[(Attempts, Failure, bool, Decision)] = &[
            (
                t(1, 1, false),
                Failure::Connect,
                false,
                go(Next::SameBackend),
            ),
            (
                t(1, 3, false),
                Failure::Connect,
                false,
                go(Next::SameBackend),
            ),
            (
                t(1, 4, false),
                Failure::Connect,
                false,
                down(Next::OtherBackend),
            ),
            // The last backend's connects are exhausted: 503, and still marked down.
            (
                t(3, 4, false),
                Failure::Connect,
                false,
                down(Next::GiveUp(Fault::NoBackend)),
            ),
            (
                t(1, 1, false),
                before(true, true),
                true,
                go(Next::FreshConnection),
            ),
            (
                t(1, 1, true),
                before(true, true),
                true,
                go(Next::OtherBackend),
            ),
            (
                t(1, 1, false),
                before(false, true),
                true,
                go(Next::OtherBackend),
            ),
            (
                t(3, 1, false),
                before(false, true),
                true,
                go(Next::GiveUp(Fault::NoBackend)),
            ),
            // A POST that may have arrived is never sent again, pooled or not.
            (
                t(1, 1, false),
                before(true, true),
                false,
                go(Next::GiveUp(Fault::NotResent)),
            ),
            (
                t(1, 1, false),
                before(false, true),
                false,
                go(Next::GiveUp(Fault::NotResent)),
            ),
            // ... but one that provably did not may go elsewhere.
            (
                t(1, 1, false),
                before(true, false),
                false,
                go(Next::FreshConnection),
            ),
        ];
        for (tried, failure, replayable, want) in table {
            assert_eq!(
                decide(BUDGET, tried, *failure, *replayable),
                *want,
                "{tried:?} {failure:?}"
            );
        }
    }

    #[test]
    fn zero_same_backend_tries_once() {
        let budget = Budget {
            same_backend: 0,
            ..BUDGET
        };
        let tried = Attempts {
            backends: 1,
            connects: 1,
            fresh_retry_used: false,
        };
        assert_eq!(
            decide(budget, &tried, Failure::Connect, true),
            Decision {
                next: Next::OtherBackend,
                mark_down: true
            }
        );
    }
}
