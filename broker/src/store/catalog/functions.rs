//! Function deployments in `meta.redb`: each function's current and previous version, its
//! modules (uploaded in chunks, kept whole once their hash checks) and their compiled
//! artefacts, so a restart loads code instead of compiling it.

use std::collections::BTreeSet;

use quiver_proto::requests::function::{FnSpec, Sha256};
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use crate::store::catalog::Catalog;
use crate::store::tables::{FN_ARTIFACTS, FN_MODULES, FN_UPLOADS, FUNCTIONS};
use crate::store::{Refusal, StoreError};

/// One deployed version of a function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnVersion {
    /// Version number (rises with each deploy of the name).
    pub version: u32,
    /// The module's SHA-256.
    pub sha256: Sha256,
    /// What it reads and how.
    pub spec: FnSpec,
    /// When it was deployed (ms since the Unix epoch).
    pub deployed_ms: u64,
}

/// A function: the version that runs and the one a rollback returns to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnRecord {
    /// Running version.
    pub current: FnVersion,
    /// The version before it.
    pub previous: Option<FnVersion>,
    /// Times this broker compiled the function's modules.
    pub compiles: u64,
}

impl FnRecord {
    /// The number the next deploy gets.
    pub fn next_version(&self) -> u32 {
        let previous = self.previous.as_ref().map_or(0, |p| p.version);
        self.current.version.max(previous).saturating_add(1)
    }
}

/// Where an upload stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upload {
    /// This many bytes are held: the next chunk starts there.
    Partial(u64),
    /// The module is stored whole.
    Complete,
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        pos: 0,
        reason: format!("{what} in meta.redb: {err}"),
    }
}

fn decode_record(name: &str, bytes: &[u8]) -> Result<FnRecord, StoreError> {
    quiver_proto::decode_body(bytes).map_err(|err| corrupt(&format!("function {name:?}"), err))
}

impl Catalog {
    /// A function, if deployed.
    pub fn function(&self, name: &str) -> Result<Option<FnRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(FUNCTIONS)?;
        let Some(value) = table.get(name)? else {
            return Ok(None);
        };
        Ok(Some(decode_record(name, value.value())?))
    }

    /// Every deployed function, by name.
    pub fn functions(&self) -> Result<Vec<(String, FnRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(FUNCTIONS)?;
        let mut all = Vec::new();
        for row in table.iter()? {
            let (name, value) = row?;
            let name = name.value().to_owned();
            let record = decode_record(&name, value.value())?;
            all.push((name, record));
        }
        Ok(all)
    }

    /// Stores a function (`None`: removes it), then drops modules, artefacts and uploads no
    /// function names, and artefacts of other engines.
    pub fn put_function(
        &self,
        name: &str,
        record: Option<&FnRecord>,
        engine_key: u64,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut functions = txn.open_table(FUNCTIONS)?;
            match record {
                Some(record) => {
                    functions.insert(name, quiver_proto::encode_body(record).as_slice())?;
                }
                None => {
                    functions.remove(name)?;
                }
            }
            let mut named: BTreeSet<Vec<u8>> = BTreeSet::new();
            for row in functions.iter()? {
                let (name, value) = row?;
                let record = decode_record(name.value(), value.value())?;
                named.insert(record.current.sha256.to_vec());
                named.extend(record.previous.map(|p| p.sha256.to_vec()));
            }
            let mut modules = txn.open_table(FN_MODULES)?;
            modules.retain(|sha, _| named.contains(sha))?;
            let mut artifacts = txn.open_table(FN_ARTIFACTS)?;
            artifacts.retain(|(sha, key), _| key == engine_key && named.contains(sha))?;
            let mut uploads = txn.open_table(FN_UPLOADS)?;
            uploads.retain(|_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Whether the module is stored whole.
    pub fn has_module(&self, sha: &Sha256) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(FN_MODULES)?.get(sha.as_slice())?.is_some())
    }

    /// A stored module.
    pub fn module(&self, sha: &Sha256) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(FN_MODULES)?;
        Ok(table.get(sha.as_slice())?.map(|v| v.value().to_vec()))
    }

    /// A module's stored artefact for `engine_key`, with its checksum.
    pub fn artifact(
        &self,
        sha: &Sha256,
        engine_key: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(FN_ARTIFACTS)?;
        let Some(value) = table.get((sha.as_slice(), engine_key))? else {
            return Ok(None);
        };
        let bytes = value.value();
        let Some((sum, artifact)) = bytes.split_first_chunk::<8>() else {
            return Err(corrupt("a function artefact", "shorter than its checksum"));
        };
        Ok(Some((u64::from_le_bytes(*sum), artifact.to_vec())))
    }

    /// Stores a module's artefact for `engine_key`.
    pub fn put_artifact(
        &self,
        sha: &Sha256,
        engine_key: u64,
        checksum: u64,
        artifact: &[u8],
    ) -> Result<(), StoreError> {
        let mut value = Vec::with_capacity(8 + artifact.len());
        value.extend_from_slice(&checksum.to_le_bytes());
        value.extend_from_slice(artifact);
        let txn = self.db.begin_write()?;
        txn.open_table(FN_ARTIFACTS)?
            .insert((sha.as_slice(), engine_key), value.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Adds a chunk of the module `sha` of `total` bytes at `offset`. A chunk that does not
    /// start where the held bytes end is not stored (the answer says where to resume). The
    /// last chunk joins the module, which `check` must accept (its hash), or the upload is
    /// dropped with `check`'s error.
    pub fn upload_chunk(
        &self,
        sha: &Sha256,
        total: u64,
        offset: u64,
        chunk: &[u8],
        check: impl FnOnce(&[u8]) -> Result<(), StoreError>,
    ) -> Result<Upload, StoreError> {
        let key = sha.as_slice();
        let txn = self.db.begin_write()?;
        let done = {
            if txn.open_table(FN_MODULES)?.get(key)?.is_some() {
                return Ok(Upload::Complete);
            }
            let mut uploads = txn.open_table(FN_UPLOADS)?;
            let mut held = 0u64;
            for row in uploads.range((key, 0)..=(key, u64::MAX))? {
                let (_, value) = row?;
                held += value.value().len() as u64;
            }
            if offset != held || chunk.is_empty() {
                return Ok(Upload::Partial(held));
            }
            let end = offset + chunk.len() as u64;
            if end > total {
                return Err(StoreError::invalid(
                    Refusal::InvalidArgument,
                    format!("chunk ends at byte {end}, past the module's {total} bytes"),
                ));
            }
            uploads.insert((key, offset), chunk)?;
            if end < total {
                Some(Upload::Partial(end))
            } else {
                let mut module = Vec::with_capacity(total as usize);
                for row in uploads.range((key, 0)..=(key, u64::MAX))? {
                    module.extend_from_slice(row?.1.value());
                }
                uploads.retain(|(sha, _), _| sha != key)?;
                match check(&module) {
                    Ok(()) => {
                        txn.open_table(FN_MODULES)?.insert(key, module.as_slice())?;
                        None
                    }
                    Err(err) => {
                        drop(uploads);
                        txn.commit()?;
                        return Err(err);
                    }
                }
            }
        };
        txn.commit()?;
        Ok(done.unwrap_or(Upload::Complete))
    }
}
