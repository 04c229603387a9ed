//! The data plane: the commit log's segments and records, the writer that appends to it
//! (a pure batch assembler, the durable-position gate and the I/O loop), reads through the
//! index to the log, recovery, retention and repair, and the storage backends.

pub mod assemble;
pub mod backend;
pub mod direct;
pub mod fault;
pub mod gate;
pub mod reader;
pub mod recent;
pub mod record;
pub(crate) mod recovery;
pub mod repair;
pub(crate) mod retention;
mod segments;
pub(crate) mod writer;

pub use segments::{Log, ScanEnd, scan, scan_bytes, segment_name};
