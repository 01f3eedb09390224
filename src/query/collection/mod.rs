//! `CollectionTable`: a collection as a DataFusion table. `scan` pins one
//! manifest version, prunes segments by their min/max statistics, scans the
//! key + scalar column group with the filters pushed into the Parquet reader,
//! and fetches vector columns only for the rows that survive
//! ([`MaterializeExec`]), after rows hidden by deletes are dropped.

pub(crate) mod snapshot;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::concat;
use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef, UInt32Type, UInt64Type};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Column, Constraint, Constraints, DFSchema, DataFusionError, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use tracing::Instrument;

use crate::error::Error;
use crate::storage::wal::growing::MemView;
use crate::storage::format::keys::{key_at, DeleteMap, DeleteSet};
use crate::storage::format::manifest::{DataFile, Manifest, SegmentMeta};
use crate::storage::format::schema::{CollectionSchema, ROW_COLUMN, SEG_COLUMN, TS_COLUMN};
use crate::storage::format::segment::text_to_scalar;
use crate::storage::{IngestMode, Store};

type DFResult<T> = datafusion::common::Result<T>;

/// Name of the catalog quiver registers.
pub const CATALOG: &str = "quiver";
/// Name of the schema holding the collections.
pub const SCHEMA: &str = "public";

/// The `quiver` catalog: one schema, `public`.
#[derive(Debug)]
pub struct QuiverCatalog {
    schema: Arc<QuiverSchema>,
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
    store: Arc<Store>,
    system_columns: bool,
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

/// One collection at one pinned manifest version.
#[derive(Debug)]
pub struct CollectionTable {
    store: Arc<Store>,
    manifest: Arc<Manifest>,
    /// Deletes of the committed version and of the growing segments.
    deletes: DeleteSet,
    /// Published rows of the growing segments (not yet flushed).
    growing: Vec<RecordBatch>,
    schema: CollectionSchema,
    arrow_schema: SchemaRef,
    constraints: Constraints,
    /// Made by the catalog for the collection's name (the latest version
    /// when planned), not by time travel to a fixed version: a statement
    /// run again later reads the then latest version ([`latest_table`]).
    latest: bool,
    system_columns: bool,
    /// No growing segment adds rows or deletes to the manifest's.
    flushed: bool,
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
    fn growing_batches(
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
    fn pk_index(&self) -> usize {
        self.schema
            .fields()
            .iter()
            .position(|f| f.name() == self.schema.primary_key())
            .unwrap_or(0)
    }

    fn name(&self) -> &str {
        &self.manifest.collection
    }

    /// Filters that only read key and scalar columns can run inside the
    /// Parquet scan of column group 0.
    fn is_scalar_filter(&self, e: &Expr) -> bool {
        e.column_refs()
            .iter()
            .all(|c| self.arrow_schema.index_of(&c.name).is_ok() && !self.schema.is_vector(&c.name))
    }

    /// Segments whose statistics say they may hold rows matching `filters`.
    fn prune_segments(&self, state: &dyn Session, filters: &[Expr]) -> DFResult<Vec<&SegmentMeta>> {
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
    async fn scan_collection(
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
        };
        Ok(Arc::new(MaterializeExec::new(
            scan,
            Arc::new(materialize),
            Arc::new(growing),
        )))
    }

    fn insert_plan(
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

/// Segment statistics from the manifest, for [`PruningPredicate`].
struct SegmentStats<'a> {
    schema: &'a Schema,
    segments: &'a [&'a SegmentMeta],
}

impl SegmentStats<'_> {
    fn values(
        &self,
        column: &Column,
        pick: impl Fn(&crate::storage::format::manifest::ColumnStats) -> Option<&String>,
    ) -> Option<ArrayRef> {
        let dt = self
            .schema
            .field_with_name(&column.name)
            .ok()?
            .data_type()
            .clone();
        let values: Vec<ScalarValue> = self
            .segments
            .iter()
            .map(|s| {
                s.stats
                    .get(&column.name)
                    .and_then(&pick)
                    .and_then(|t| text_to_scalar(t, &dt))
                    .unwrap_or(ScalarValue::try_from(&dt).unwrap_or(ScalarValue::Null))
            })
            .collect();
        ScalarValue::iter_to_array(values).ok()
    }
}

impl PruningStatistics for SegmentStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.min.as_ref())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.max.as_ref())
    }

    fn num_containers(&self) -> usize {
        self.segments.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let counts: Vec<Option<u64>> = self
            .segments
            .iter()
            .map(|s| s.stats.get(&column.name).map(|c| c.null_count))
            .collect();
        Some(Arc::new(UInt64Array::from(counts)))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from_iter_values(
            self.segments.iter().map(|s| s.rows),
        )))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// Where an output column of [`MaterializeExec`] comes from.
#[derive(Debug, Clone)]
enum ColumnSource {
    /// A column of the input (group-0 scan) at this index.
    Input(usize),
    /// A vector column fetched from its column-group file.
    Vector(String),
}

/// Drops rows hidden by a delete with a larger `_ts` (MVCC).
#[derive(Debug)]
struct DeleteFilter {
    map: DeleteSet,
    pk_idx: usize,
    ts_idx: usize,
}

/// What [`MaterializeExec`] does to each batch of the group-0 scan.
#[derive(Debug)]
struct Materialize {
    store: Arc<Store>,
    collection: String,
    /// Output schema.
    schema: SchemaRef,
    /// The output schema with the primary key appended as [`KEY_COLUMN`].
    keyed_schema: SchemaRef,
    /// Input index of the primary key, and its name.
    key_idx: usize,
    key_name: String,
    /// Names of the input (group-0 scan) columns.
    input_names: Vec<String>,
    /// The group-0 file of each scanned segment.
    group0: Vec<(u64, DataFile)>,
    sources: Vec<ColumnSource>,
    /// Input indices of `_seg` and `_row`, when vectors are fetched.
    address: Option<(usize, usize)>,
    deletes: Option<DeleteFilter>,
    /// segment id -> vector column -> file.
    files: HashMap<u64, HashMap<String, DataFile>>,
    /// Sealed segments of the version, and those skipped by their
    /// min/max statistics (EXPLAIN ANALYZE: `segments_total`, `segments_pruned`).
    segments_total: usize,
    segments_pruned: usize,
}

/// A unit of work of a resident scan (see [`MaterializeExec::units`]).
#[derive(Debug, Clone, Copy)]
pub enum ScanUnit {
    /// Row group `rg` of the `segment`-th scanned segment, whose first row
    /// is row `start` of the segment; of it, the rows `part` (from, to)
    /// if given, else all.
    RowGroup {
        segment: usize,
        rg: usize,
        start: u64,
        part: Option<(usize, usize)>,
    },
    /// The rows of the growing segments.
    Growing,
}

/// Fewest rows of a part of a row group a resident scan deals out
/// ([`MaterializeExec::units`]).
pub const MIN_PART_ROWS: usize = 4096;

/// Name of the primary-key column appended to keyed batches.
pub const KEY_COLUMN: &str = "__quiver_key";

/// Turns rows of the key + scalar column group into result rows: drops
/// deleted rows, then reads the vector columns of exactly the surviving rows
/// (by `_seg`, `_row`) from their column-group files (late materialization).
/// The rows of the growing segments (in memory, deletes applied) form one
/// more partition after the input's.
#[derive(Debug)]
pub struct MaterializeExec {
    input: Arc<dyn ExecutionPlan>,
    work: Arc<Materialize>,
    /// Growing rows in the keyed schema.
    growing: Arc<Vec<RecordBatch>>,
    properties: Arc<PlanProperties>,
    /// `vector_fetches` (reads of a segment's vector file) and
    /// `vector_rows` (rows fetched), shown by EXPLAIN ANALYZE.
    metrics: ExecutionPlanMetricsSet,
    /// The counters of resident scans ([`MaterializeExec::load_unit`]).
    resident_counters: FetchCounters,
}

impl MaterializeExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        work: Arc<Materialize>,
        growing: Arc<Vec<RecordBatch>>,
    ) -> Self {
        let schema = work.schema.clone();
        // Rows keep their order, so an ordering of the input on columns we
        // pass through is an ordering of the output (sorts can run below
        // this operator, on rows without vectors); the growing partition
        // has no order.
        let mut ordering = Vec::new();
        if let (Some(input_ordering), true) = (input.output_ordering(), growing.is_empty()) {
            for sort in input_ordering.iter() {
                let Some(col) = sort.expr.downcast_ref::<PhysicalColumn>() else {
                    break;
                };
                let Some(out) = work
                    .sources
                    .iter()
                    .position(|s| matches!(s, ColumnSource::Input(i) if *i == col.index()))
                else {
                    break;
                };
                let expr = Arc::new(PhysicalColumn::new(schema.field(out).name(), out))
                    as Arc<dyn PhysicalExpr>;
                ordering.push(PhysicalSortExpr::new(expr, sort.options));
            }
        }
        let eq = if ordering.is_empty() {
            EquivalenceProperties::new(schema.clone())
        } else {
            EquivalenceProperties::new_with_orderings(schema.clone(), [ordering])
        };
        let partitioning = if growing.is_empty() {
            input.output_partitioning().clone()
        } else {
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count() + 1)
        };
        let properties = Arc::new(PlanProperties::new(
            eq,
            partitioning,
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        let (metrics, resident_counters) = Self::fresh_metrics(&work);
        Self {
            input,
            work,
            growing,
            properties,
            metrics,
            resident_counters,
        }
    }

    /// New counters: the segment counts, and the resident scan's.
    fn fresh_metrics(work: &Materialize) -> (ExecutionPlanMetricsSet, FetchCounters) {
        let metrics = ExecutionPlanMetricsSet::new();
        MetricBuilder::new(&metrics)
            .counter("segments_total", 0)
            .add(work.segments_total);
        MetricBuilder::new(&metrics)
            .counter("segments_pruned", 0)
            .add(work.segments_pruned);
        let counters = FetchCounters::new(&metrics, 0);
        (metrics, counters)
    }

    /// This scan again, for another run of a fused top-k: the same plan
    /// with counters of its own. Only for a resident scan, which the top-k
    /// reads by row group ([`MaterializeExec::load_unit`]): the Parquet
    /// scan below, shared, is never run (its counters would add up).
    pub fn again(&self) -> Option<Self> {
        if !self.resident() {
            return None;
        }
        let (metrics, resident_counters) = Self::fresh_metrics(&self.work);
        Some(Self {
            input: self.input.clone(),
            work: self.work.clone(),
            growing: self.growing.clone(),
            properties: self.properties.clone(),
            metrics,
            resident_counters,
        })
    }

    /// The output schema with the primary key appended (as [`KEY_COLUMN`]).
    pub fn keyed_schema(&self) -> &SchemaRef {
        &self.work.keyed_schema
    }

    /// Name of the collection's primary key.
    pub fn primary_key(&self) -> &str {
        &self.work.key_name
    }

    /// Whether output column `i` is a vector column of the collection.
    pub fn is_vector_column(&self, i: usize) -> bool {
        matches!(self.work.sources.get(i), Some(ColumnSource::Vector(_)))
    }

    /// Like `execute`, with the primary key appended to every batch.
    pub fn execute_keyed(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        self.stream(partition, context, true)
    }

    /// Whether [`MaterializeExec::load_unit`] can serve the scan from the
    /// decoded-column cache (it is enabled).
    pub fn resident(&self) -> bool {
        self.work.store.config().decoded_cache_bytes > 0
    }

    /// The units of a resident scan: every row group of every scanned
    /// segment, and the growing rows. With fewer row groups than
    /// `workers`, each is cut into parts of at least [`MIN_PART_ROWS`]
    /// rows, so a small collection (one row group) is still scored on
    /// every core.
    pub async fn units(&self, workers: usize) -> DFResult<Vec<ScanUnit>> {
        let mut groups = Vec::new();
        for (i, (_, f)) in self.work.group0.iter().enumerate() {
            let path = Store::file_path(&self.work.collection, &f.path);
            let meta = self.work.store.reader_metadata(&path, f.size).await?;
            let mut start = 0u64;
            for (rg, g) in meta.metadata().row_groups().iter().enumerate() {
                groups.push((i, rg, start, g.num_rows() as usize));
                start += g.num_rows() as u64;
            }
        }
        let per_group = if groups.is_empty() {
            1
        } else {
            workers.div_ceil(groups.len())
        };
        let mut units = Vec::new();
        for (segment, rg, start, rows) in groups {
            let parts = per_group.min(rows / MIN_PART_ROWS).max(1);
            for p in 0..parts {
                units.push(ScanUnit::RowGroup {
                    segment,
                    rg,
                    start,
                    part: (parts > 1).then(|| (rows * p / parts, rows * (p + 1) / parts)),
                });
            }
        }
        if !self.growing.is_empty() {
            units.push(ScanUnit::Growing);
        }
        Ok(units)
    }

    /// Indices (in the keyed schema) of the columns that are not vectors,
    /// the key last: the schema of the batches `load_unit`'s `prefilter`
    /// sees.
    pub fn scalar_columns(&self) -> Vec<usize> {
        let mut cols: Vec<usize> = (0..self.work.sources.len())
            .filter(|&i| !self.is_vector_column(i))
            .collect();
        cols.push(self.work.sources.len());
        cols
    }

    /// The keyed batches of one unit, each with the mask of its rows that
    /// no delete hides and `prefilter` (run on the [`Self::scalar_columns`]
    /// first) accepts; `None` when that is every row. Columns come from
    /// the decoded-column cache without copying; vectors are read only for
    /// the rows that pass when few do and the row group's vectors are not
    /// cached (a sparse read), so a selective filter decodes few vectors.
    /// When few pass and the vectors are cached, `in_place` (for a caller
    /// that reads only the masked rows' vectors) leaves them where they lie:
    /// the batch holds the whole row group and the mask, nothing is copied.
    pub async fn load_unit(
        &self,
        unit: ScanUnit,
        prefilter: &(dyn Fn(&RecordBatch) -> DFResult<Option<BooleanArray>> + Send + Sync),
        in_place: bool,
    ) -> DFResult<Vec<(RecordBatch, Option<BooleanArray>)>> {
        let scalar_cols = self.scalar_columns();
        let (segment, rg, group_start, part) = match unit {
            ScanUnit::Growing => {
                let mut out = Vec::with_capacity(self.growing.len());
                for b in self.growing.iter() {
                    self.resident_counters.scanned(b.num_rows(), b.columns());
                    let mask = prefilter(&b.project(&scalar_cols)?)?;
                    out.push((b.clone(), mask.filter(|m| m.true_count() < b.num_rows())));
                }
                return Ok(out);
            }
            ScanUnit::RowGroup {
                segment,
                rg,
                start,
                part,
            } => (segment, rg, start, part),
        };
        let work = &self.work;
        let (seg_id, file) = &work.group0[segment];
        let path = Store::file_path(&work.collection, &file.path);
        let meta = work.store.reader_metadata(&path, file.size).await?;
        let group_rows = meta.metadata().row_group(rg).num_rows() as usize;
        let (from, to) = part.unwrap_or((0, group_rows));
        // The unit's rows: `rows` from row `start` of the segment.
        let (rows, start) = (to - from, group_start + from as u64);
        // Decode the input columns this needs (not the row address: the
        // vectors are read by position here).
        let mut needed: Vec<usize> = work
            .sources
            .iter()
            .filter_map(|s| match s {
                ColumnSource::Input(i) => Some(*i),
                ColumnSource::Vector(_) => None,
            })
            .collect();
        needed.push(work.key_idx);
        if let Some(d) = &work.deletes {
            needed.extend([d.pk_idx, d.ts_idx]);
        }
        needed.sort_unstable();
        needed.dedup();
        let file_schema = meta.schema().clone();
        let roots: Vec<usize> = needed
            .iter()
            .map(|&i| file_schema.index_of(&work.input_names[i]))
            .collect::<Result<_, _>>()?;
        let mut decoded = work
            .store
            .decoded_columns(&path, file.size, &meta, rg, &roots)
            .await?;
        if rows < group_rows {
            for a in decoded.iter_mut() {
                *a = a.slice(from, rows);
            }
        }
        self.resident_counters.scanned(rows, &decoded);
        let mut decoded_at: Vec<Option<ArrayRef>> = vec![None; work.input_names.len()];
        for (&i, a) in needed.iter().zip(decoded) {
            decoded_at[i] = Some(a);
        }
        let input = |i: usize| decoded_at[i].clone().expect("a decoded input column");
        // The scalar columns and the key, in the keyed schema's order.
        let mut columns: Vec<Option<ArrayRef>> = vec![None; work.sources.len() + 1];
        for (out_idx, src) in work.sources.iter().enumerate() {
            if let ColumnSource::Input(i) = src {
                let want = work.schema.field(out_idx).data_type();
                let col = input(*i);
                columns[out_idx] = Some(if col.data_type() == want {
                    col
                } else {
                    arrow::compute::cast(&col, want)?
                });
            }
        }
        columns[work.sources.len()] = Some(input(work.key_idx));
        let live = match &work.deletes {
            Some(d) => {
                let keys = input(d.pk_idx);
                let ts = input(d.ts_idx);
                let ts = ts.as_primitive::<UInt64Type>();
                let keep = BooleanArray::from_iter(
                    (0..rows).map(|i| Some(!d.map.hides(key_at(keys.as_ref(), i), ts.value(i)))),
                );
                (keep.true_count() < rows).then_some(keep)
            }
            None => None,
        };
        let scalar_schema = Arc::new(work.keyed_schema.project(&scalar_cols)?);
        let scalar = RecordBatch::try_new_with_options(
            scalar_schema,
            scalar_cols
                .iter()
                .map(|&i| columns[i].clone().expect("a scalar column"))
                .collect(),
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        let mask = match (live, prefilter(&scalar)?) {
            (None, m) | (m, None) => m,
            (Some(a), Some(b)) => Some(arrow::compute::and(&a, &b)?),
        };
        let selected = mask.as_ref().map_or(rows, |m| m.true_count());
        if selected == 0 {
            return Ok(Vec::new());
        }
        // Few rows pass: keep just those, and read just their vectors.
        let sparse = selected * 8 < rows;
        let counters = &self.resident_counters;
        if sparse && in_place {
            if let Some(chunks) = self
                .cached_vectors(*seg_id, group_start, group_rows)
                .await?
            {
                let chunks: Vec<(usize, ArrayRef)> = chunks
                    .into_iter()
                    .map(|(i, c)| (i, c.slice(from, rows)))
                    .collect();
                let row_bytes: usize = chunks
                    .iter()
                    .map(|(_, c)| slice_bytes(c.as_ref()) / rows)
                    .sum();
                counters.fetches.add(chunks.len());
                counters.chunk_hits.add(chunks.len());
                counters.rows.add(selected * chunks.len());
                counters.rows_in_place.add(selected);
                counters.bytes_scanned.add(selected * row_bytes);
                for (out_idx, chunk) in chunks {
                    columns[out_idx] = Some(chunk);
                }
                return Ok(vec![(self.keyed_batch(columns, rows)?, mask)]);
            }
        }
        let (positions, n) = match (&mask, sparse) {
            (Some(m), true) => {
                let idx = true_positions(m);
                for c in columns.iter_mut().flatten() {
                    *c = arrow::compute::take(c.as_ref(), &idx, None)?;
                }
                let positions: Vec<u32> = idx.values().iter().map(|&i| start as u32 + i).collect();
                (positions, idx.len())
            }
            _ => (
                (start as u32..(start as usize + rows) as u32).collect(),
                rows,
            ),
        };
        for (out_idx, src) in work.sources.iter().enumerate() {
            if let ColumnSource::Vector(name) = src {
                let file = work
                    .files
                    .get(seg_id)
                    .and_then(|m| m.get(name))
                    .ok_or_else(|| {
                        DataFusionError::External(Box::new(Error::Corrupt {
                            path: format!("{}/insert_log/{seg_id}", work.collection),
                            reason: format!("segment has no file for vector column '{name}'"),
                        }))
                    })?;
                counters.fetches.add(1);
                counters.rows.add(positions.len());
                let vectors = work.read_rows(file, out_idx, &positions, counters).await?;
                counters.scanned(0, [&vectors]);
                columns[out_idx] = Some(vectors);
            }
        }
        let batch = self.keyed_batch(columns, n)?;
        Ok(vec![(batch, if sparse { None } else { mask })])
    }

    /// A batch of the keyed schema with `rows` rows from `columns`, every
    /// one of which is set.
    fn keyed_batch(&self, columns: Vec<Option<ArrayRef>>, rows: usize) -> DFResult<RecordBatch> {
        let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.work.keyed_schema.clone(),
            columns
                .into_iter()
                .map(|c| c.expect("every column"))
                .collect(),
            &opts,
        )?)
    }

    /// Every vector column of rows `start..start + rows` of segment
    /// `seg_id` (by output index), if each is one whole row group of its
    /// file that the decoded-column cache holds; `None` otherwise.
    async fn cached_vectors(
        &self,
        seg_id: u64,
        start: u64,
        rows: usize,
    ) -> DFResult<Option<Vec<(usize, ArrayRef)>>> {
        let work = &self.work;
        let mut out = Vec::new();
        for (out_idx, src) in work.sources.iter().enumerate() {
            let ColumnSource::Vector(name) = src else {
                continue;
            };
            let Some(file) = work.files.get(&seg_id).and_then(|m| m.get(name)) else {
                return Ok(None);
            };
            let path = Store::file_path(&work.collection, &file.path);
            let meta = work.store.reader_metadata(&path, file.size).await?;
            let mut at = 0u64;
            let mut group = None;
            for (i, g) in meta.metadata().row_groups().iter().enumerate() {
                if at == start {
                    group = (g.num_rows() as usize == rows).then_some(i);
                    break;
                }
                at += g.num_rows() as u64;
                if at > start {
                    break;
                }
            }
            let Some(rg) = group else {
                return Ok(None);
            };
            match work.store.cached_chunk(&path, rg).await {
                Some(chunk) if chunk.len() == rows => out.push((out_idx, chunk)),
                _ => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    fn stream(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
        keyed: bool,
    ) -> DFResult<SendableRecordBatchStream> {
        let schema = if keyed {
            self.work.keyed_schema.clone()
        } else {
            self.work.schema.clone()
        };
        let n_input = self.input.output_partitioning().partition_count();
        let span = tracing::debug_span!(
            parent: &crate::query::observe::phase_parent(&context),
            "scan",
            collection = %self.work.collection,
            partition
        );
        let counters = FetchCounters::new(&self.metrics, partition);
        if partition >= n_input {
            let width = self.work.schema.fields().len();
            let mut log = ScanLog::new(span);
            log.rows = self.growing.iter().map(|b| b.num_rows()).sum();
            log.batches = self.growing.len();
            let batches: Vec<DFResult<RecordBatch>> = self
                .growing
                .iter()
                .map(|b| {
                    counters.scanned(b.num_rows(), b.columns());
                    if keyed {
                        Ok(b.clone())
                    } else {
                        Ok(b.project(&(0..width).collect::<Vec<_>>())?)
                    }
                })
                .collect();
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::iter(batches),
            )));
        }
        let batch_size = context.session_config().batch_size();
        let input = coalesce(self.input.execute(partition, context)?, batch_size);
        let work = self.work.clone();
        let mut log = ScanLog::new(span.clone());
        let stream = input
            .map(move |batch| {
                let work = work.clone();
                let counters = counters.clone();
                async move { work.process(batch?, &counters, keyed).await }.instrument(span.clone())
            })
            // Overlap object-store reads of consecutive batches, in order.
            .buffered(4)
            .inspect(move |b| {
                // The whole log moves into the stream: it reports when the
                // stream is dropped.
                let log = &mut log;
                if let Ok(b) = b {
                    log.rows += b.num_rows();
                    log.batches += 1;
                }
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

impl DisplayAs for MaterializeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let vectors: Vec<&str> = self
            .work
            .sources
            .iter()
            .filter_map(|s| match s {
                ColumnSource::Vector(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        write!(f, "MaterializeExec: collection={}", self.work.collection)?;
        if !vectors.is_empty() {
            write!(
                f,
                ", vectors=[{}], segments={}",
                vectors.join(", "),
                self.work.files.len()
            )?;
        }
        if let Some(d) = &self.work.deletes {
            write!(f, ", deleted_keys={}", d.map.len())?;
        }
        if !self.growing.is_empty() {
            let rows: usize = self.growing.iter().map(|b| b.num_rows()).sum();
            write!(f, ", growing_rows={rows}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for MaterializeExec {
    fn name(&self) -> &str {
        "MaterializeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let [input] = children.try_into().map_err(|_| {
            DataFusionError::Internal("MaterializeExec takes exactly one child".into())
        })?;
        Ok(Arc::new(MaterializeExec::new(
            input,
            self.work.clone(),
            self.growing.clone(),
        )))
    }

    /// DataFusion pushes a sort below an operator that keeps its input's
    /// order with the sort's columns taken by index, so that holds only
    /// when every output column is the input column of the same index (no
    /// vector fetched, none moved); else a sort by a column after a vector
    /// column would sort the input by another column (`_seg`) and the plan
    /// fail. The growing partition has no order.
    fn maintains_input_order(&self) -> Vec<bool> {
        let same_places = self
            .work
            .sources
            .iter()
            .enumerate()
            .all(|(j, s)| matches!(s, ColumnSource::Input(i) if *i == j));
        vec![self.growing.is_empty() && same_places]
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        self.stream(partition, context, false)
    }
}

/// Per-partition metrics of [`MaterializeExec`], shown by EXPLAIN ANALYZE:
/// vector file reads and rows, and decoded-chunk cache hits and misses (a
/// miss decodes a whole row group; sparse reads use neither).
#[derive(Debug, Clone)]
struct FetchCounters {
    fetches: Count,
    rows: Count,
    chunk_hits: Count,
    chunk_misses: Count,
    /// Rows this operator read itself (row groups of resident scans, the
    /// growing rows; the Parquet scan below counts its own).
    rows_scanned: Count,
    /// Decoded bytes of the columns this operator read itself.
    bytes_scanned: Count,
    /// Rows of a sparse selection whose vectors were left where they lie
    /// in cached chunks (no copy): the top-k scores them in place.
    rows_in_place: Count,
}

impl FetchCounters {
    fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        Self {
            fetches: MetricBuilder::new(metrics).counter("vector_fetches", partition),
            rows: MetricBuilder::new(metrics).counter("vector_rows", partition),
            chunk_hits: MetricBuilder::new(metrics).counter("chunk_cache_hits", partition),
            chunk_misses: MetricBuilder::new(metrics).counter("chunk_cache_misses", partition),
            rows_scanned: MetricBuilder::new(metrics).counter("rows_scanned", partition),
            bytes_scanned: MetricBuilder::new(metrics).counter("bytes_scanned", partition),
            rows_in_place: MetricBuilder::new(metrics).counter("vector_rows_in_place", partition),
        }
    }

    /// Counts `rows` rows read, with the columns in `arrays`.
    fn scanned<'a>(&self, rows: usize, arrays: impl IntoIterator<Item = &'a ArrayRef>) {
        self.rows_scanned.add(rows);
        self.bytes_scanned
            .add(arrays.into_iter().map(|a| slice_bytes(a.as_ref())).sum());
    }
}

/// The memory a (possibly sliced) array's values take.
fn slice_bytes(a: &dyn Array) -> usize {
    a.to_data().get_slice_memory_size().unwrap_or(0)
}

/// Logs a scan's totals when it ends or is dropped, at debug level in its
/// `scan` span.
struct ScanLog {
    span: tracing::Span,
    start: std::time::Instant,
    rows: usize,
    batches: usize,
}

impl ScanLog {
    fn new(span: tracing::Span) -> Self {
        Self {
            span,
            start: std::time::Instant::now(),
            rows: 0,
            batches: 0,
        }
    }
}

impl Drop for ScanLog {
    fn drop(&mut self) {
        let _entered = self.span.enter();
        tracing::debug!(
            ms = self.start.elapsed().as_secs_f64() * 1e3,
            rows = self.rows,
            batches = self.batches,
            "scan finished"
        );
    }
}

/// Joins the small batches a selective scan yields (one per row group or
/// page) into batches of about `target` rows, in order, so vectors are
/// fetched once per batch rather than once per sliver.
fn coalesce(
    input: SendableRecordBatchStream,
    target: usize,
) -> futures::stream::BoxStream<'static, DFResult<RecordBatch>> {
    let schema = input.schema();
    futures::stream::unfold((input, false), move |(mut input, done)| {
        let schema = schema.clone();
        async move {
            if done {
                return None;
            }
            let mut pending: Vec<RecordBatch> = Vec::new();
            let mut rows = 0usize;
            let mut finished = false;
            while rows < target {
                match input.next().await {
                    Some(Ok(b)) => {
                        if b.num_rows() > 0 {
                            rows += b.num_rows();
                            pending.push(b);
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), (input, true))),
                    None => {
                        finished = true;
                        break;
                    }
                }
            }
            let out = match pending.len() {
                0 => return None,
                1 => Ok(pending.pop().expect("one batch")),
                _ => arrow::compute::concat_batches(&schema, &pending).map_err(Into::into),
            };
            Some((out, (input, finished)))
        }
    })
    .boxed()
}

impl Materialize {
    async fn process(
        &self,
        batch: RecordBatch,
        counters: &FetchCounters,
        keyed: bool,
    ) -> DFResult<RecordBatch> {
        let batch = match &self.deletes {
            Some(d) => {
                let keys = batch.column(d.pk_idx);
                let ts = batch.column(d.ts_idx).as_primitive::<UInt64Type>();
                let keep = BooleanArray::from_iter(
                    (0..batch.num_rows())
                        .map(|i| Some(!d.map.hides(key_at(keys.as_ref(), i), ts.value(i)))),
                );
                if keep.true_count() == batch.num_rows() {
                    batch
                } else {
                    arrow::compute::filter_record_batch(&batch, &keep)?
                }
            }
            None => batch,
        };
        // Rows may come in any order (a sort can run below this operator),
        // so group them by segment, read each segment's rows in file order,
        // and interleave the results back into the batch's order.
        let mut by_segment: Vec<(u64, Vec<(u32, usize)>)> = Vec::new();
        let mut slot: Vec<(usize, usize)> = vec![(0, 0); batch.num_rows()];
        if let Some((seg_idx, row_idx)) = self.address {
            let segs = batch.column(seg_idx).as_primitive::<UInt64Type>();
            let rows = batch.column(row_idx).as_primitive::<UInt32Type>();
            let mut index: HashMap<u64, usize> = HashMap::new();
            for i in 0..batch.num_rows() {
                let g = *index.entry(segs.value(i)).or_insert_with(|| {
                    by_segment.push((segs.value(i), Vec::new()));
                    by_segment.len() - 1
                });
                by_segment[g].1.push((rows.value(i), i));
            }
            for (g, (_, members)) in by_segment.iter_mut().enumerate() {
                members.sort_unstable();
                for (k, &(_, out_row)) in members.iter().enumerate() {
                    slot[out_row] = (g, k);
                }
            }
        }
        let mut columns = Vec::with_capacity(self.sources.len());
        for (out_idx, src) in self.sources.iter().enumerate() {
            let col = match src {
                ColumnSource::Input(i) => batch.column(*i).clone(),
                ColumnSource::Vector(name) => {
                    let mut parts = Vec::with_capacity(by_segment.len());
                    for (seg, members) in &by_segment {
                        let file =
                            self.files
                                .get(seg)
                                .and_then(|m| m.get(name))
                                .ok_or_else(|| {
                                    DataFusionError::External(Box::new(Error::Corrupt {
                                        path: format!("{}/insert_log/{seg}", self.collection),
                                        reason: format!(
                                            "segment has no file for vector column '{name}'"
                                        ),
                                    }))
                                })?;
                        let positions: Vec<u32> = members.iter().map(|(p, _)| *p).collect();
                        counters.fetches.add(1);
                        counters.rows.add(positions.len());
                        let part = self.read_rows(file, out_idx, &positions, counters).await?;
                        counters.scanned(0, [&part]);
                        parts.push(part);
                    }
                    match parts.len() {
                        0 => arrow::array::new_empty_array(self.schema.field(out_idx).data_type()),
                        1 if slot.iter().enumerate().all(|(i, s)| s.1 == i) => {
                            parts.pop().expect("one part")
                        }
                        _ => {
                            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                            arrow::compute::interleave(&refs, &slot)?
                        }
                    }
                }
            };
            columns.push(col);
        }
        let schema = if keyed {
            columns.push(batch.column(self.key_idx).clone());
            self.keyed_schema.clone()
        } else {
            self.schema.clone()
        };
        let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(schema, columns, &opts)?)
    }

    /// Reads the rows at `positions` (ascending) of a one-column file.
    ///
    /// Row groups whose decoded column is cached, or of which the query
    /// wants at least 1/8 of the rows, are taken from the decoded-chunk cache
    /// (decoding the whole row group on a miss); sparser selections decode
    /// only the selected rows.
    async fn read_rows(
        &self,
        file: &DataFile,
        out_idx: usize,
        positions: &[u32],
        counters: &FetchCounters,
    ) -> DFResult<ArrayRef> {
        let want = self.schema.field(out_idx).data_type().clone();
        if positions.is_empty() {
            return Ok(arrow::array::new_empty_array(&want));
        }
        let path = Store::file_path(&self.collection, &file.path);
        let meta = self.store.reader_metadata(&path, file.size).await?;
        // (row group, rows) parts, and the row groups to read row by row.
        let mut parts: Vec<(usize, ArrayRef)> = Vec::new();
        let mut sparse: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut start = 0u64;
        let mut k = 0usize;
        for (i, rg) in meta.metadata().row_groups().iter().enumerate() {
            let n = rg.num_rows() as u64;
            let end = start + n;
            let from = k;
            while k < positions.len() && (positions[k] as u64) < end {
                k += 1;
            }
            if k > from {
                let local: Vec<u32> = positions[from..k]
                    .iter()
                    .map(|&p| (p as u64 - start) as u32)
                    .collect();
                let dense = (local.len() as u64) * 8 >= n;
                match self
                    .store
                    .decoded_chunk(&path, file.size, &meta, i, dense)
                    .await?
                {
                    Some((chunk, hit)) => {
                        if hit {
                            counters.chunk_hits.add(1);
                        } else {
                            counters.chunk_misses.add(1);
                        }
                        let (lo, hi) = (local[0] as usize, local[local.len() - 1] as usize);
                        let part = if hi - lo + 1 == local.len() {
                            // A run of rows (ascending, no gaps): no copy.
                            chunk.slice(lo, local.len())
                        } else {
                            crate::storage::format::layout::gather(&chunk, &local)?
                        };
                        parts.push((i, part));
                    }
                    None => sparse.push((i, local)),
                }
            }
            start = end;
            if k == positions.len() {
                break;
            }
        }
        if !sparse.is_empty() {
            let groups: Vec<(usize, Option<&[u32]>)> = sparse
                .iter()
                .map(|(rg, sel)| (*rg, Some(sel.as_slice())))
                .collect();
            let rows = self
                .store
                .load_rows(&path, file.size, &meta, &groups)
                .await?;
            let mut offset = 0;
            for (rg, sel) in &sparse {
                parts.push((*rg, rows.slice(offset, sel.len())));
                offset += sel.len();
            }
            parts.sort_by_key(|(rg, _)| *rg);
        }
        let out = match parts.len() {
            1 => parts.pop().expect("one part").1,
            _ => {
                let refs: Vec<&dyn Array> = parts.iter().map(|(_, a)| a.as_ref()).collect();
                concat(&refs)?
            }
        };
        if out.len() != positions.len() {
            return Err(DataFusionError::External(Box::new(Error::Corrupt {
                path: file.path.clone(),
                reason: format!("expected {} rows, read {}", positions.len(), out.len()),
            })));
        }
        // Older files may carry a differently named list element field:
        // present the collection's type.
        if &want != out.data_type() {
            return Ok(arrow::compute::cast(&out, &want)?);
        }
        Ok(out)
    }
}

/// Sink for `INSERT INTO`: ingests the stream as one atomic commit.
#[derive(Debug)]
struct CollectionSink {
    store: Arc<Store>,
    collection: String,
    schema: SchemaRef,
    mode: IngestMode,
}

impl DisplayAs for CollectionSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CollectionSink: collection={}", self.collection)
    }
}

#[async_trait]
impl DataSink for CollectionSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        let stream = data.map_err(Error::from);
        let rows = self
            .store
            .ingest(
                &self.collection,
                self.schema.clone(),
                stream,
                self.mode,
                None,
            )
            .await?;
        Ok(rows)
    }
}

/// Positions of the true values of `mask` (a null is not true).
pub(crate) fn true_positions(mask: &arrow::array::BooleanArray) -> arrow::array::UInt32Array {
    let values = match mask.nulls() {
        Some(nulls) => mask.values() & nulls.inner(),
        None => mask.values().clone(),
    };
    arrow::array::UInt32Array::from_iter_values(values.set_indices().map(|i| i as u32))
}


