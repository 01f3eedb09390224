//! quiver's integration tests: one binary, one module per area.

mod ann;
mod cache;
mod cli;
mod corrupt;
mod engine;
#[cfg(feature = "failpoints")]
mod failpoints;
mod faults;
mod flight;
mod flight_auth;
mod flight_limits;
mod layering;
mod model;
mod plan_cache;
mod slt;
mod time_slice;
mod topk;
mod util;
mod wal;
