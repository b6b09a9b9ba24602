//! Hard bounds of the code that the configuration may not exceed. Both sides import them
//! from here, so validation and the arrays they size cannot drift apart.

/// Most header fields any head may carry (`limits.headers` at most; sizes the parser's
/// header array on the stack).
pub const MAX_HEADERS: usize = 1000;

/// Most backends one request may try (`retry.max_attempts` at most; sizes an exchange's
/// list of backends tried).
pub const MAX_ATTEMPTS: usize = 16;

/// Most backends of all pools together (each has a health-check slot and a column in
/// every worker's upstream pool).
pub const MAX_BACKENDS: usize = 10_000;

/// Most `[[pool]]` tables.
pub const MAX_POOLS: usize = 1_000;

/// Most `[[route]]` tables (the route table is built once per snapshot; a reload builds
/// it again).
pub const MAX_ROUTES: usize = 10_000;
