//! quiver's integration tests: one binary, one module per area.

mod cli;
mod engine;
mod flight;
mod model;
mod slt;
