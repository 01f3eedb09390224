//! The `quiver` catalog and its one schema, `public`: every collection of
//! the store is a table, looked up afresh (a table pins its manifest when
//! it is scanned, not when it is listed).

use crate::query::collection::provider::latest_table;
use crate::storage::Store;
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use std::sync::Arc;
type DFResult<T> = datafusion::common::Result<T>;

/// Name of the catalog quiver registers.
pub const CATALOG: &str = "quiver";

/// Name of the schema holding the collections.
pub const SCHEMA: &str = "public";

/// The `quiver` catalog: one schema, `public`.
#[derive(Debug)]
pub struct QuiverCatalog {
    pub(crate) schema: Arc<QuiverSchema>,
}

impl QuiverCatalog {
    /// A catalog whose tables also expose the system columns `_ts`, `_seg`
    /// and `_row` (used for queries that name them).
    pub fn with_system_columns(store: Arc<Store>, system_columns: bool) -> Self {
        Self {
            schema: Arc::new(QuiverSchema {
                store,
                system_columns,
            }),
        }
    }
}

impl CatalogProvider for QuiverCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec![SCHEMA.to_string()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == SCHEMA).then(|| self.schema.clone() as Arc<dyn SchemaProvider>)
    }
}

/// The `public` schema: every live collection of the store.
#[derive(Debug)]
pub struct QuiverSchema {
    pub(crate) store: Arc<Store>,
    pub(crate) system_columns: bool,
}

#[async_trait]
impl SchemaProvider for QuiverSchema {
    fn table_names(&self) -> Vec<String> {
        self.store.collection_names()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Ok(latest_table(&self.store, name, self.system_columns)
            .await?
            .map(|t| t as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.store.snapshot(name).is_some()
    }
}
