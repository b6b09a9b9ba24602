//! The one place that writes `mio::Token` values: what each token number means.
//!
//! Layout: 0 is the listener, 1 the waker; from 2 on, even numbers are sessions and odd
//! numbers upstream connections, each by its slab index.

use mio::Token;

/// The worker's listening socket.
pub const LISTENER: Token = Token(0);
/// The worker's `mio::Waker` (control messages pending).
pub const WAKER: Token = Token(1);
const FIRST: usize = 2;

/// What a token refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The listener.
    Listener,
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

/// Decodes a token from an event.
pub fn classify(token: Token) -> Target {
    match token.0 {
        0 => Target::Listener,
        1 => Target::Waker,
        n if (n - FIRST) % 2 == 0 => Target::Session((n - FIRST) / 2),
        n => Target::Upstream((n - FIRST) / 2),
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
        }
        assert_eq!(classify(LISTENER), Target::Listener);
        assert_eq!(classify(WAKER), Target::Waker);
    }
}
