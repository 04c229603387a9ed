//! The indexes in `index.redb`, rebuildable from the log: consume pages (`page`, `consume`)
//! and the dispatcher that folds each record's entries into them, the id rows and the key
//! rows.

pub mod consume;
pub mod dispatcher;
pub mod page;
