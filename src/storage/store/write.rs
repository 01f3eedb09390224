//! The write operations: create and drop a collection, ingest (through the
//! log when one is configured and the write is small, else sealed),
//! write-back for UPDATE, deletes by key and TRUNCATE.

use crate::error::{Error, Result};
use crate::storage::format::manifest::{Change, OnExists};
use crate::storage::format::schema::CollectionSchema;
use crate::storage::format::segment::write_delete_log;
use crate::storage::store::Store;
use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use futures::{Stream, StreamExt};

/// How an ingest treats an existing or missing collection (Flight SQL
/// `TableDefinitionOptions`, ADBC's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestMode {
    /// Create the collection if it does not exist (else: error).
    pub create: bool,
    /// What to do if it exists.
    pub on_exists: OnExists,
}

impl IngestMode {
    pub const CREATE: Self = Self {
        create: true,
        on_exists: OnExists::Fail,
    };
    pub const APPEND: Self = Self {
        create: false,
        on_exists: OnExists::Append,
    };
    pub const REPLACE: Self = Self {
        create: true,
        on_exists: OnExists::Replace,
    };
    pub const CREATE_APPEND: Self = Self {
        create: true,
        on_exists: OnExists::Append,
    };
}

impl Store {
    /// Creates an empty collection.
    pub async fn create_collection(
        &self,
        name: &str,
        schema: CollectionSchema,
        if_not_exists: bool,
    ) -> Result<bool> {
        let _guard = self.write_lock.lock().await;
        if self.snapshot(name).is_some() {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(Error::CollectionExists(name.to_string()))
            };
        }
        let change = Change::Create {
            schema,
            segments: vec![],
            deletes: vec![],
            on_exists: OnExists::Fail,
        };
        self.commit(name, &change, None).await?;
        Ok(true)
    }

    /// Drops a collection. Its files stay until garbage collection.
    pub async fn drop_collection(&self, name: &str, if_exists: bool) -> Result<bool> {
        let cw = self.coll_wal(name);
        let mut exclusive = match &cw {
            Some(c) => Some(c.exclusive().await),
            None => None,
        };
        let _guard = self.write_lock.lock().await;
        if self.snapshot(name).is_none() {
            return if if_exists {
                Ok(false)
            } else {
                Err(Error::CollectionNotFound(name.to_string()))
            };
        }
        self.commit(name, &Change::Drop, None).await?;
        if let Some(x) = &mut exclusive {
            x.reset().await?;
        }
        Ok(true)
    }

    /// Writes a stream of batches into a collection as one atomic commit:
    /// either every row becomes visible or none does. Returns the number of
    /// rows stored.
    ///
    /// A collection with a declared primary key upserts by it: a row whose
    /// key exists replaces the old row (a delete of the key and the insert
    /// share one `_ts`), and of rows repeating a key within one write the
    /// last one is stored (as Milvus's upsert), so the count returned is
    /// the number of distinct keys written. Keys that may exist are found
    /// by the segments' key ranges and Bloom filters, so a pure append
    /// reads no old data. A collection without a declared key numbers its
    /// rows itself ([`crate::storage::format::schema::ID_COLUMN`]) and every write appends.
    ///
    /// `input_schema` is the stream's schema (used to create the collection);
    /// `primary_key` names the key on create (else the column `id`, else a
    /// generated key).
    pub async fn ingest<S>(
        &self,
        name: &str,
        input_schema: SchemaRef,
        batches: S,
        mode: IngestMode,
        primary_key: Option<&str>,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<RecordBatch>> + Send,
    {
        let existed = self.snapshot(name).is_some();
        let rows = self
            .ingest_unmetered(name, input_schema, batches, mode, primary_key, false)
            .await
            .map_err(|e| match e {
                // Asked to create it if missing, it was there, and the
                // input names a column it lacks: the table exists (as ADBC
                // expects of create_append), just not as the input has it.
                Error::InvalidInput(reason)
                    if existed && mode.create && reason.starts_with("unknown column") =>
                {
                    Error::ExistsWithOtherColumns {
                        collection: name.to_string(),
                        reason,
                    }
                }
                e => e,
            })?;
        crate::metrics::ingested(rows);
        Ok(rows)
    }

    /// Writes rows back under the keys they carry, generated keys included
    /// (an UPDATE): an upsert into an existing collection. The batches hold
    /// the collection's stored columns ([`CollectionSchema::arrow_schema`]).
    pub(crate) async fn write_back<S>(&self, name: &str, batches: S) -> Result<u64>
    where
        S: Stream<Item = Result<RecordBatch>> + Send,
    {
        let m = self.require(name)?;
        let schema = m.schema.clone().expect("live collection has a schema");
        self.ingest_unmetered(
            name,
            schema.arrow_schema(),
            batches,
            IngestMode::APPEND,
            None,
            true,
        )
        .await
    }

    pub(crate) async fn ingest_unmetered<S>(
        &self,
        name: &str,
        input_schema: SchemaRef,
        batches: S,
        mode: IngestMode,
        primary_key: Option<&str>,
        keys_given: bool,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<RecordBatch>> + Send,
    {
        let cw = self.coll_wal(name);
        let existing = self.snapshot(name);
        let appending = existing.is_some() && mode.on_exists == OnExists::Append;
        // A small append goes through the log; a create, a replace and a
        // write too large for the growing segment are sealed directly.
        if let (Some(cw), Some(limit), Some(m), true) =
            (&cw, self.wal_write_limit(), &existing, appending)
        {
            let schema = m.schema.clone().expect("live collection has a schema");
            let mut batches = Box::pin(batches);
            let mut buffered: Vec<RecordBatch> = Vec::new();
            let mut bytes = 0usize;
            let mut overflow = false;
            while let Some(b) = batches.next().await {
                let b = schema.conform_keyed(name, &b?, keys_given)?;
                if b.num_rows() == 0 {
                    continue;
                }
                bytes += b.get_array_memory_size();
                buffered.push(b);
                if bytes > limit {
                    overflow = true;
                    break;
                }
            }
            if !overflow {
                return self
                    .wal_insert(name, &schema, cw, buffered, keys_given)
                    .await;
            }
            let rest = futures::stream::iter(buffered.into_iter().map(Ok)).chain(batches);
            return self
                .ingest_sealed(
                    name,
                    input_schema,
                    rest,
                    mode,
                    primary_key,
                    Some(cw),
                    keys_given,
                )
                .await;
        }
        self.ingest_sealed(
            name,
            input_schema,
            batches,
            mode,
            primary_key,
            cw.as_ref(),
            keys_given,
        )
        .await
    }

    /// Empties a collection in one manifest-only commit: its schema stays,
    /// its segments and delete logs leave the newest version (older
    /// versions keep them for time travel until garbage collection), and
    /// its growing segment and log are dropped.
    pub async fn truncate(&self, name: &str) -> Result<()> {
        let cw = self.coll_wal(name);
        let mut exclusive = match &cw {
            Some(c) => Some(c.exclusive().await),
            None => None,
        };
        let _guard = self.write_lock.lock().await;
        let m = self.require(name)?;
        let schema = m.schema.clone().expect("live collection has a schema");
        let change = Change::Create {
            schema,
            segments: vec![],
            deletes: vec![],
            on_exists: OnExists::Replace,
        };
        self.commit(name, &change, None).await?;
        if let Some(x) = &mut exclusive {
            x.reset().await?;
        }
        Ok(())
    }

    /// Deletes the rows with the given primary keys (an array of the key
    /// column's type). Returns the number of keys.
    pub async fn delete_keys(&self, name: &str, keys: ArrayRef) -> Result<u64> {
        if let Some(cw) = self.coll_wal(name) {
            if keys.is_empty() {
                self.require(name)?;
                return Ok(0);
            }
            return self.wal_delete(name, &cw, keys).await;
        }
        let _guard = self.write_lock.lock().await;
        let m = self.require(name)?;
        let schema = m.schema.clone().expect("live collection has a schema");
        if keys.is_empty() {
            return Ok(0);
        }
        let ts = self.clock.now();
        let n = keys.len();
        let log =
            write_delete_log(&self.object_store, &self.config, name, keys, vec![ts; n]).await?;
        let change = Change::Append {
            schema,
            segments: vec![],
            deletes: vec![log],
            flushed_ts: 0,
        };
        self.commit(name, &change, None).await?;
        Ok(n as u64)
    }
}
