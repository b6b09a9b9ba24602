//! Hard bounds of the code that the configuration may not exceed. Both sides import them
//! from here, so validation and the arrays they size cannot drift apart.

/// Most header fields any head may carry (`limits.headers` at most; sizes the parser's
/// header array on the stack).
pub const MAX_HEADERS: usize = 1000;

/// Most backends one request may try (`retry.max_attempts` at most; sizes an exchange's
/// list of backends tried).
pub const MAX_ATTEMPTS: usize = 16;
