//! `CollectionTable`, the `TableProvider`: `scan` pins one manifest
//! version (and the growing rows published with it), prunes segments,
//! and plans the key + scalar scan with filters pushed into Parquet under a
//! `MaterializeExec`; `insert_into` writes through the store.

use crate::query::collection::exec::{MaterializeExec, KEY_COLUMN};
use crate::query::collection::materialize::{ColumnSource, DeleteFilter, Materialize};
use crate::query::collection::prune::SegmentStats;
use crate::query::collection::sink::CollectionSink;
use crate::storage::format::keys::{key_at, DeleteMap, DeleteSet};
use crate::storage::format::manifest::{DataFile, Manifest, SegmentMeta};
use crate::storage::format::schema::{CollectionSchema, ROW_COLUMN, SEG_COLUMN, TS_COLUMN};
use crate::storage::wal::growing::MemView;
use crate::storage::{IngestMode, Store};
use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, UInt64Array};
use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef, UInt64Type};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Constraint, Constraints, DFSchema};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use std::collections::HashMap;
use std::sync::Arc;
type DFResult<T> = datafusion::common::Result<T>;

/// One collection at one pinned manifest version.
#[derive(Debug)]
pub struct CollectionTable {
    pub(crate) store: Arc<Store>,
    pub(crate) manifest: Arc<Manifest>,
    /// Deletes of the committed version and of the growing segments.
    pub(crate) deletes: DeleteSet,
    /// Published rows of the growing segments (not yet flushed).
    pub(crate) growing: Vec<RecordBatch>,
    pub(crate) schema: CollectionSchema,
    pub(crate) arrow_schema: SchemaRef,
    pub(crate) constraints: Constraints,
    /// Made by the catalog for the collection's name (the latest version
    /// when planned), not by time travel to a fixed version: a statement
    /// run again later reads the then latest version ([`latest_table`]).
    pub(crate) latest: bool,
    pub(crate) system_columns: bool,
    /// No growing segment adds rows or deletes to the manifest's.
    pub(crate) flushed: bool,
}

impl CollectionTable {
    /// The collection at `manifest`, with its merged deletes. With
    /// `system_columns`, `_ts`, `_seg` and `_row` follow the user columns.
    pub fn new(
        store: Arc<Store>,
        manifest: Arc<Manifest>,
        deletes: Arc<DeleteMap>,
        system_columns: bool,
    ) -> Self {
        let schema = manifest
            .schema
            .clone()
            .expect("live collection has a schema");
        // The generated key of a collection without a declared one is a
        // system column: shown only with the others.
        let mut fields: Vec<FieldRef> = if system_columns {
            schema.fields().to_vec()
        } else {
            schema.visible_fields().to_vec()
        };
        if system_columns {
            let group0 = schema.scalar_group_schema();
            for name in [TS_COLUMN, SEG_COLUMN, ROW_COLUMN] {
                if let Ok(f) = group0.field_with_name(name) {
                    fields.push(Arc::new(f.clone()));
                }
            }
        }
        let arrow_schema = Arc::new(Schema::new(fields));
        // DataFusion derives functional dependencies from the key: only a
        // key the table shows may be declared.
        let constraints = match arrow_schema.index_of(schema.primary_key()) {
            Ok(pk) => Constraints::new_unverified(vec![Constraint::PrimaryKey(vec![pk])]),
            Err(_) => Constraints::default(),
        };
        Self {
            store,
            manifest,
            deletes: DeleteSet::new([deletes]),
            growing: Vec::new(),
            schema,
            arrow_schema,
            constraints,
            latest: false,
            system_columns,
            flushed: true,
        }
    }

    /// Whether this names the collection's latest version (see [`latest_table`]).
    pub fn is_latest(&self) -> bool {
        self.latest
    }

    pub fn has_system_columns(&self) -> bool {
        self.system_columns
    }

    /// Adds the rows and deletes of growing segments to what the table shows.
    pub fn with_growing(mut self, mems: Vec<MemView>) -> Self {
        let mut maps: Vec<Arc<DeleteMap>> = self.deletes.maps().to_vec();
        for m in mems {
            self.flushed &= m.batches.iter().all(|b| b.num_rows() == 0) && m.deletes.is_empty();
            maps.push(m.deletes);
            self.growing.extend(m.batches);
        }
        self.deletes = DeleteSet::new(maps);
        self
    }

    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// The manifest, when it is all the table shows (no growing rows, no
    /// deletes of growing segments): then a scan of the table is fixed by
    /// the manifest and the scan's arguments, and one planned before may
    /// serve again ([`MaterializeExec::again`]).
    pub fn flushed_manifest(&self) -> Option<&Arc<Manifest>> {
        self.flushed.then_some(&self.manifest)
    }

    /// The growing rows a scan of `projection` returns, those no delete
    /// hides, with `_seg` 0 and `_row` their position, and the primary key
    /// appended as a last column (see [`MaterializeExec`]'s keyed batches).
    pub(crate) fn growing_batches(
        &self,
        projection: &[usize],
        keyed_schema: &SchemaRef,
    ) -> DFResult<Vec<RecordBatch>> {
        let n_user = self.schema.fields().len();
        let pk = self.pk_index();
        let mut out = Vec::with_capacity(self.growing.len());
        let mut row = 0u32;
        for b in &self.growing {
            let ts = b.column(n_user).as_primitive::<UInt64Type>();
            let keys = b.column(pk);
            let keep = BooleanArray::from_iter(
                (0..b.num_rows())
                    .map(|i| Some(!self.deletes.hides(key_at(keys.as_ref(), i), ts.value(i)))),
            );
            let n = b.num_rows() as u32;
            let positions: ArrayRef =
                Arc::new(arrow::array::UInt32Array::from_iter_values(row..row + n));
            row += n;
            let mut cols = Vec::with_capacity(projection.len() + 1);
            for &i in projection {
                let name = self.arrow_schema.field(i).name();
                cols.push(match name.as_str() {
                    TS_COLUMN => b.column(n_user).clone(),
                    SEG_COLUMN => Arc::new(UInt64Array::from(vec![0u64; b.num_rows()])) as ArrayRef,
                    ROW_COLUMN => positions.clone(),
                    _ => b.column(i).clone(),
                });
            }
            cols.push(keys.clone());
            let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
            let full = RecordBatch::try_new_with_options(keyed_schema.clone(), cols, &opts)?;
            let kept = if keep.true_count() == full.num_rows() {
                full
            } else {
                arrow::compute::filter_record_batch(&full, &keep)?
            };
            if kept.num_rows() > 0 {
                out.push(kept);
            }
        }
        Ok(out)
    }

    /// Index of the primary key among the user columns.
    pub(crate) fn pk_index(&self) -> usize {
        self.schema
            .fields()
            .iter()
            .position(|f| f.name() == self.schema.primary_key())
            .unwrap_or(0)
    }

    pub(crate) fn name(&self) -> &str {
        &self.manifest.collection
    }

    /// Filters that only read key and scalar columns can run inside the
    /// Parquet scan of column group 0.
    pub(crate) fn is_scalar_filter(&self, e: &Expr) -> bool {
        e.column_refs()
            .iter()
            .all(|c| self.arrow_schema.index_of(&c.name).is_ok() && !self.schema.is_vector(&c.name))
    }

    /// Segments whose statistics say they may hold rows matching `filters`.
    pub(crate) fn prune_segments(
        &self,
        state: &dyn Session,
        filters: &[Expr],
    ) -> DFResult<Vec<&SegmentMeta>> {
        let segments: Vec<&SegmentMeta> = self.manifest.segments.iter().collect();
        let Some(expr) = conjunction(filters.iter().filter(|e| self.is_scalar_filter(e)).cloned())
        else {
            return Ok(segments);
        };
        let df_schema = DFSchema::try_from(self.arrow_schema.clone())?;
        let physical = state.create_physical_expr(expr, &df_schema)?;
        let predicate = PruningPredicateBuilder::new()
            .with_file_schema(self.arrow_schema.clone())
            .try_build(physical)?;
        let keep = predicate.prune(&SegmentStats {
            schema: &self.arrow_schema,
            segments: &segments,
        })?;
        Ok(segments
            .into_iter()
            .zip(keep)
            .filter_map(|(s, k)| k.then_some(s))
            .collect())
    }
}

#[async_trait]
impl TableProvider for CollectionTable {
    fn schema(&self) -> SchemaRef {
        self.arrow_schema.clone()
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|e| {
                if self.is_scalar_filter(e) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.arrow_schema.fields().len()).collect());
        let projected = Arc::new(self.arrow_schema.project(&projection)?);
        self.scan_collection(state, &projection, projected, filters, limit)
            .await
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        self.insert_plan(input, op)
    }
}

impl CollectionTable {
    /// The scan of the pinned version: the sealed segments' group-0 files,
    /// under a [`MaterializeExec`] that drops deleted rows, fetches vectors
    /// and adds the rows of the growing segments, unless none of that is
    /// needed.
    pub(crate) async fn scan_collection(
        &self,
        state: &dyn Session,
        projection: &[usize],
        projected: SchemaRef,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let segments = self.prune_segments(state, filters)?;
        let segments_len = segments.len();
        if segments.is_empty() && self.growing.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }

        // Plan the group-0 scan: the key, scalar and system columns of the
        // projection; the row address when vectors must be fetched; the key
        // and `_ts` when deletes must be applied.
        let file_schema = self.schema.scalar_group_schema();
        let mut file_projection: Vec<usize> = Vec::new();
        let need = |name: &str, fp: &mut Vec<usize>| -> DFResult<usize> {
            let idx = file_schema.index_of(name)?;
            Ok(match fp.iter().position(|&i| i == idx) {
                Some(p) => p,
                None => {
                    fp.push(idx);
                    fp.len() - 1
                }
            })
        };
        let mut sources = Vec::with_capacity(projection.len());
        for &i in projection {
            let name = self.arrow_schema.field(i).name();
            if self.schema.is_vector(name) {
                sources.push(ColumnSource::Vector(name.clone()));
            } else {
                sources.push(ColumnSource::Input(need(name, &mut file_projection)?));
            }
        }
        let has_vectors = sources.iter().any(|s| matches!(s, ColumnSource::Vector(_)));
        let address = if has_vectors {
            Some((
                need(SEG_COLUMN, &mut file_projection)?,
                need(ROW_COLUMN, &mut file_projection)?,
            ))
        } else {
            None
        };
        let deletes = if self.deletes.is_empty() {
            None
        } else {
            Some(DeleteFilter {
                map: self.deletes.clone(),
                pk_idx: need(self.schema.primary_key(), &mut file_projection)?,
                ts_idx: need(TS_COLUMN, &mut file_projection)?,
            })
        };

        let plain = !has_vectors && deletes.is_none() && self.growing.is_empty();
        // The key travels with every row, for deletes and for the tie-break
        // of the fused top-k (see `MaterializeExec::execute_keyed`).
        let key_idx = if plain {
            0
        } else {
            need(self.schema.primary_key(), &mut file_projection)?
        };

        let url = ObjectStoreUrl::parse(self.store.store_url().as_str())?;
        let mut source = ParquetSource::new(file_schema.clone())
            .with_table_parquet_options(state.default_table_options().parquet);
        if let Some(expr) =
            conjunction(filters.iter().filter(|e| self.is_scalar_filter(e)).cloned())
        {
            let df_schema = DFSchema::try_from(file_schema.clone())?;
            source = source.with_predicate(state.create_physical_expr(expr, &df_schema)?);
        }
        let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
        source = source.with_parquet_file_reader_factory(Arc::new(
            CachedParquetFileReaderFactory::new(self.store.object_store().clone(), cache),
        ));
        let files: Vec<PartitionedFile> = segments
            .iter()
            .filter_map(|s| s.files.iter().find(|f| f.group == 0))
            .map(|f| {
                PartitionedFile::new(Store::file_path(self.name(), &f.path).to_string(), f.size)
            })
            .collect();
        let input_names: Vec<String> = file_projection
            .iter()
            .map(|&i| file_schema.field(i).name().clone())
            .collect();
        let scan: Arc<dyn ExecutionPlan> = if files.is_empty() {
            Arc::new(EmptyExec::new(Arc::new(
                file_schema.project(&file_projection)?,
            )))
        } else {
            let partitions = state.config().target_partitions().max(1);
            let groups = FileGroup::new(files).split_files(partitions);
            let conf = FileScanConfigBuilder::new(url, Arc::new(source))
                .with_file_groups(groups)
                .with_projection_indices(Some(file_projection))?
                // Deleted rows are dropped above the scan, so a limit inside
                // it could stop short.
                .with_limit(if deletes.is_none() { limit } else { None })
                .build();
            DataSourceExec::from_data_source(conf)
        };
        if plain {
            return Ok(scan);
        }

        let group0: Vec<(u64, DataFile)> = segments
            .iter()
            .filter_map(|s| {
                s.files
                    .iter()
                    .find(|f| f.group == 0)
                    .map(|f| (s.id, f.clone()))
            })
            .collect();
        let mut files: HashMap<u64, HashMap<String, DataFile>> = HashMap::new();
        if has_vectors {
            for s in &segments {
                let by_col = files.entry(s.id).or_default();
                for f in s.files.iter().filter(|f| f.group != 0) {
                    for c in &f.columns {
                        by_col.insert(c.clone(), f.clone());
                    }
                }
            }
        }
        let mut keyed: Vec<FieldRef> = projected.fields().to_vec();
        keyed.push(Arc::new(Field::new(
            KEY_COLUMN,
            self.schema.fields()[self.pk_index()].data_type().clone(),
            false,
        )));
        let keyed_schema = Arc::new(Schema::new(keyed));
        let growing = self.growing_batches(projection, &keyed_schema)?;
        let materialize = Materialize {
            store: self.store.clone(),
            collection: self.name().to_string(),
            schema: projected,
            keyed_schema,
            key_idx,
            key_name: self.schema.primary_key().to_string(),
            input_names,
            group0,
            sources,
            address,
            deletes,
            files,
            segments_total: self.manifest.segments.len(),
            segments_pruned: self.manifest.segments.len() - segments_len,
            indexes: self.manifest.indexes.clone(),
            index_files: segments
                .iter()
                .filter(|s| !s.index_files.is_empty())
                .map(|s| (s.id, s.index_files.clone()))
                .collect(),
        };
        Ok(Arc::new(MaterializeExec::new(
            scan,
            Arc::new(materialize),
            Arc::new(growing),
        )))
    }

    pub(crate) fn insert_plan(
        &self,
        input: Arc<dyn ExecutionPlan>,
        op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let mode = match op {
            // Every insert into a keyed collection replaces the rows with
            // the same keys: INSERT OR REPLACE is an INSERT.
            InsertOp::Append | InsertOp::Replace => IngestMode::APPEND,
            InsertOp::Overwrite => IngestMode {
                create: false,
                on_exists: crate::storage::format::manifest::OnExists::Replace,
            },
        };
        let sink = CollectionSink {
            store: self.store.clone(),
            collection: self.name().to_string(),
            schema: self.arrow_schema.clone(),
            mode,
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Collection `name` as a query sees it now: the latest committed version
/// with the growing segments' rows and deletes (`None`: no such collection).
pub(crate) async fn latest_table(
    store: &Arc<Store>,
    name: &str,
    system_columns: bool,
) -> crate::error::Result<Option<Arc<CollectionTable>>> {
    if let Some(e) = store.unreadable(name) {
        return Err(e);
    }
    let Some((m, mems)) = store.snapshot_with_mem(name) else {
        return Ok(None);
    };
    let deletes = store.delete_map(&m).await?;
    let mut table =
        CollectionTable::new(store.clone(), m, deletes, system_columns).with_growing(mems);
    table.latest = true;
    Ok(Some(Arc::new(table)))
}
