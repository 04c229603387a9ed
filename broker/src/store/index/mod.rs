//! The indexes in `index.redb`, rebuildable from the log: consume pages (`page`, `consume`)
//! and the dispatcher that folds each record's entries into them, the id rows and the key
//! rows.

pub mod consume;
pub mod dispatcher;
pub mod page;
pub mod timers;

use redb::{Durability, WriteTransaction};

use crate::store::StoreError;

/// Makes an `index.redb` write durable at commit, with quick repair: the commit also saves
/// redb's allocator state, so a start after `kill -9` loads it instead of walking every page
/// of the file (2.3 s with 10 GiB stored). The cost falls only on durable commits, one per
/// `index_durable_interval`; the dispatcher's others are `Durability::None`.
pub fn make_durable(txn: &mut WriteTransaction) -> Result<(), StoreError> {
    txn.set_durability(Durability::Immediate)?;
    txn.set_quick_repair(true);
    Ok(())
}
