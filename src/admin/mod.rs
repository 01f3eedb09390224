//! Administration: compaction, garbage collection, verification and
//! inspection of a store. These sit above `query` because compaction reads
//! live rows through SQL; nothing here names `flight` or `server`.
//!
//! Guarantees: compaction and GC commit through the store's manifest
//! protocol, so a reader never sees half of either; GC deletes only files
//! that no manifest within the retention window references.

pub mod compact;
pub mod gc;
pub mod inspect;
pub mod verify;
