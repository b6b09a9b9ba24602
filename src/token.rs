//! The one place that writes `mio::Token` values: what each token number means, for a
//! worker's poll and for the health thread's.
//!
//! Worker layout: 0 is the plain listener, 1 the waker, 2 the TLS listener; from 3 on,
//! odd numbers are sessions and even numbers upstream connections, each by its slab
//! index.
//! Health layout: 0 is the waker; `1 + i` is the probe of backend `i`.

use mio::Token;

/// The worker's listening socket.
pub const LISTENER: Token = Token(0);
/// The worker's `mio::Waker` (control messages pending).
pub const WAKER: Token = Token(1);
/// The worker's TLS listening socket (spec §9).
pub const TLS_LISTENER: Token = Token(2);
const FIRST: usize = 3;

/// What a worker's token refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The plain listener.
    Listener,
    /// The TLS listener.
    TlsListener,
    /// The waker.
    Waker,
    /// A session's client socket, by session slab index.
    Session(usize),
    /// An upstream socket, by upstream slab index.
    Upstream(usize),
}

/// The token of a session's client socket.
pub fn session(index: usize) -> Token {
    Token(FIRST + index * 2)
}

/// The token of an upstream connection.
pub fn upstream(index: usize) -> Token {
    Token(FIRST + index * 2 + 1)
}

/// Decodes a token from a worker's event.
pub fn classify(token: Token) -> Target {
    match token.0 {
        0 => Target::Listener,
        1 => Target::Waker,
        2 => Target::TlsListener,
        n if (n - FIRST) % 2 == 0 => Target::Session((n - FIRST) / 2),
        n => Target::Upstream((n - FIRST) / 2),
    }
}

/// The health thread's `mio::Waker`.
pub const HEALTH_WAKER: Token = Token(0);

/// What a health thread's token refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthTarget {
    /// The waker.
    Waker,
    /// The probe of backend `i` (index in the health thread's snapshot).
    Probe(usize),
}

/// The token of backend `index`'s probe.
pub fn probe(index: usize) -> Token {
    Token(index + 1)
}

/// Decodes a token from a health thread's event.
pub fn classify_health(token: Token) -> HealthTarget {
    match token.0 {
        0 => HealthTarget::Waker,
        n => HealthTarget::Probe(n - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for i in [0, 1, 7, 1 << 20] {
            assert_eq!(classify(session(i)), Target::Session(i));
            assert_eq!(classify(upstream(i)), Target::Upstream(i));
            assert_eq!(classify_health(probe(i)), HealthTarget::Probe(i));
        }
        assert_eq!(classify(LISTENER), Target::Listener);
        assert_eq!(classify(WAKER), Target::Waker);
        assert_eq!(classify(TLS_LISTENER), Target::TlsListener);
        assert_eq!(classify_health(HEALTH_WAKER), HealthTarget::Waker);
    }
}
