//! Loading a stored compiled artefact instead of compiling: the one `unsafe` of the function
//! host. The broker keeps each module's artefact in its catalog keyed by the module's
//! SHA-256 and [`FnEngine::artifact_key`], with a checksum of the artefact's bytes, so a
//! restart does not recompile.

use wasmtime::component::Component;

use crate::runtime::{FnEngine, FnError, FnModule};

/// The checksum stored beside an artefact (xxh3-64 of its bytes).
pub fn artifact_checksum(artifact: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(artifact)
}

impl FnModule {
    /// Loads an artefact made by [`FnModule::artifact`], checking its imports again.
    ///
    /// The caller passes the checksum it stored with the artefact; bytes that do not match it
    /// are refused before wasmtime sees them, as is an artefact of another engine (wasmtime
    /// checks its own version and settings header too). On any error the caller compiles the
    /// module again.
    pub fn from_artifact(
        engine: &FnEngine,
        artifact: &[u8],
        checksum: u64,
    ) -> Result<Self, FnError> {
        if artifact_checksum(artifact) != checksum {
            return Err(FnError::Invalid(
                "the stored artefact does not match its checksum".into(),
            ));
        }
        #[allow(unsafe_code)]
        // SAFETY: `Component::deserialize` trusts its bytes to be wasmtime's own output: this
        // artefact was written by `FnModule::artifact` of this host (the broker's catalog is
        // the only source, under `FnEngine::artifact_key`, which covers the wasmtime version
        // and engine settings), and its checksum, taken when it was written, matches, so the
        // bytes are what wasmtime produced, not arbitrary or damaged input.
        let component = unsafe { Component::deserialize(engine.engine(), artifact) }
            .map_err(|err| FnError::Invalid(format!("stored artefact: {err:#}")))?;
        FnModule::link(engine, component)
    }
}
