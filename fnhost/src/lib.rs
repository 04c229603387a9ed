//! The WASM function host: loads a Quiver function component, checks what it imports, and
//! runs batches of messages through it under limits (fuel, wall-clock deadline, memory,
//! emits, log lines), with WASI linked without any capability. This crate is the only one
//! that names wasmtime; the broker and `quiver fn test` both run functions through it.
//!
//! - `imports.rs`: which imports a component may have (pure; refused ones are named).
//! - `limits.rs`: the per-call limits and their defaults.
//! - `engine.rs`: the engine and its epoch ticker.
//! - `runtime.rs`: a loaded function, its kept instances, and one call.
//! - `state.rs`: what an instance's store holds, and the host functions guests import.
//! - `artifact.rs`: loading a stored compiled artefact (the one reviewed `unsafe`).

mod artifact;
mod engine;
mod imports;
mod limits;
mod runtime;
mod state;

pub use artifact::artifact_checksum;
pub use imports::{ImportRefused, check_imports};
pub use limits::Limits;
pub use runtime::{
    CallReport, Emit, FnEngine, FnError, FnModule, LogLine, Message, Outcome, Settled,
};
