//! SQL text and logical-plan rewrites that run before planning: pgvector's
//! distance operators, and time literals compared with time columns of
//! another unit.

pub(crate) mod operators;
pub(crate) mod time_units;
