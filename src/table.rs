//! `CollectionTable`: a collection as a DataFusion table. `scan` pins one
//! manifest version, prunes segments by their min/max statistics, scans the
//! key + scalar column group with the filters pushed into the Parquet reader,
//! and fetches vector columns only for the rows that survive
//! ([`VectorFetchExec`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::concat;
use arrow::datatypes::{DataType, Schema, SchemaRef, UInt32Type, UInt64Type};
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
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
#[allow(deprecated)]
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use parquet::arrow::ProjectionMask;

use crate::error::Error;
use crate::manifest::{DataFile, Manifest, SegmentMeta};
use crate::schema::{CollectionSchema, ROW_COLUMN, SEG_COLUMN};
use crate::segment::text_to_scalar;
use crate::store::{IngestMode, Store};

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
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            schema: Arc::new(QuiverSchema { store }),
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
}

#[async_trait]
impl SchemaProvider for QuiverSchema {
    fn table_names(&self) -> Vec<String> {
        self.store.collection_names()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.store.snapshot(name).map(|m| {
            Arc::new(CollectionTable::new(self.store.clone(), m)) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.store.snapshot(name).is_some()
    }
}

/// One collection at one pinned manifest version.
#[derive(Debug)]
pub struct CollectionTable {
    store: Arc<Store>,
    manifest: Arc<Manifest>,
    schema: CollectionSchema,
    arrow_schema: SchemaRef,
    constraints: Constraints,
}

impl CollectionTable {
    pub fn new(store: Arc<Store>, manifest: Arc<Manifest>) -> Self {
        let schema = manifest
            .schema
            .clone()
            .expect("live collection has a schema");
        let arrow_schema = schema.arrow_schema();
        let pk = arrow_schema.index_of(schema.primary_key()).unwrap_or(0);
        Self {
            store,
            manifest,
            schema,
            arrow_schema,
            constraints: Constraints::new_unverified(vec![Constraint::PrimaryKey(vec![pk])]),
        }
    }

    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
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
        let segments = self.prune_segments(state, filters)?;
        if segments.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }

        // Plan the group-0 scan: scalar columns of the projection, plus the
        // row address when vectors must be fetched.
        let file_schema = self.schema.scalar_group_schema();
        let vectors: Vec<usize> = projection
            .iter()
            .copied()
            .filter(|&i| self.schema.is_vector(self.arrow_schema.field(i).name()))
            .collect();
        let mut file_projection: Vec<usize> = Vec::new();
        let mut sources = Vec::with_capacity(projection.len());
        for &i in &projection {
            let name = self.arrow_schema.field(i).name();
            if self.schema.is_vector(name) {
                sources.push(ColumnSource::Vector(name.clone()));
            } else {
                sources.push(ColumnSource::Input(file_projection.len()));
                file_projection.push(file_schema.index_of(name)?);
            }
        }
        let (seg_idx, row_idx) = (file_projection.len(), file_projection.len() + 1);
        if !vectors.is_empty() {
            file_projection.push(file_schema.index_of(SEG_COLUMN)?);
            file_projection.push(file_schema.index_of(ROW_COLUMN)?);
        }

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
        let partitions = state.config().target_partitions().max(1);
        let groups = FileGroup::new(files).split_files(partitions);
        let conf = FileScanConfigBuilder::new(url, Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(Some(file_projection))?
            .with_limit(limit)
            .build();
        let scan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(conf);
        if vectors.is_empty() {
            return Ok(scan);
        }

        let mut files: HashMap<u64, HashMap<String, DataFile>> = HashMap::new();
        for s in &segments {
            let by_col = files.entry(s.id).or_default();
            for f in s.files.iter().filter(|f| f.group != 0) {
                for c in &f.columns {
                    by_col.insert(c.clone(), f.clone());
                }
            }
        }
        Ok(Arc::new(VectorFetchExec::new(
            scan,
            self.store.clone(),
            self.name().to_string(),
            projected,
            sources,
            seg_idx,
            row_idx,
            Arc::new(files),
        )))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let mode = match op {
            InsertOp::Append => IngestMode::APPEND,
            InsertOp::Overwrite => IngestMode {
                create: false,
                on_exists: crate::manifest::OnExists::Replace,
            },
            InsertOp::Replace => return Err(DataFusionError::NotImplemented(
                "INSERT OR REPLACE is not supported yet; quiver upserts arrive with the write path"
                    .into(),
            )),
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
        pick: impl Fn(&crate::manifest::ColumnStats) -> Option<&String>,
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

/// Where an output column of [`VectorFetchExec`] comes from.
#[derive(Debug, Clone)]
enum ColumnSource {
    /// A column of the input (group-0 scan) at this index.
    Input(usize),
    /// A vector column fetched from its column-group file.
    Vector(String),
}

/// Late materialization of vector columns: for every batch of surviving
/// rows from the group-0 scan, reads exactly those rows (by `_seg`, `_row`)
/// from the vector column-group files and zips them in.
#[derive(Debug)]
pub struct VectorFetchExec {
    input: Arc<dyn ExecutionPlan>,
    store: Arc<Store>,
    collection: String,
    schema: SchemaRef,
    sources: Vec<ColumnSource>,
    seg_idx: usize,
    row_idx: usize,
    /// segment id -> vector column -> file.
    files: Arc<HashMap<u64, HashMap<String, DataFile>>>,
    properties: Arc<PlanProperties>,
}

impl VectorFetchExec {
    #[allow(clippy::too_many_arguments)]
    fn new(
        input: Arc<dyn ExecutionPlan>,
        store: Arc<Store>,
        collection: String,
        schema: SchemaRef,
        sources: Vec<ColumnSource>,
        seg_idx: usize,
        row_idx: usize,
        files: Arc<HashMap<u64, HashMap<String, DataFile>>>,
    ) -> Self {
        // Rows keep their order, so an ordering of the input on columns we
        // pass through is an ordering of the output (sorts can run below
        // the fetch, on rows without vectors).
        let mut ordering = Vec::new();
        if let Some(input_ordering) = input.output_ordering() {
            for sort in input_ordering.iter() {
                let Some(col) = sort.expr.downcast_ref::<PhysicalColumn>() else {
                    break;
                };
                let Some(out) = sources
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
        let properties = Arc::new(PlanProperties::new(
            eq,
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            input,
            store,
            collection,
            schema,
            sources,
            seg_idx,
            row_idx,
            files,
            properties,
        }
    }

    fn vector_names(&self) -> Vec<&str> {
        self.sources
            .iter()
            .filter_map(|s| match s {
                ColumnSource::Vector(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }
}

impl DisplayAs for VectorFetchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "VectorFetchExec: collection={}, vectors=[{}], segments={}",
            self.collection,
            self.vector_names().join(", "),
            self.files.len()
        )
    }
}

impl ExecutionPlan for VectorFetchExec {
    fn name(&self) -> &str {
        "VectorFetchExec"
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
            DataFusionError::Internal("VectorFetchExec takes exactly one child".into())
        })?;
        Ok(Arc::new(VectorFetchExec::new(
            input,
            self.store.clone(),
            self.collection.clone(),
            self.schema.clone(),
            self.sources.clone(),
            self.seg_idx,
            self.row_idx,
            self.files.clone(),
        )))
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let fetcher = Arc::new(Fetcher {
            store: self.store.clone(),
            collection: self.collection.clone(),
            schema: self.schema.clone(),
            sources: self.sources.clone(),
            seg_idx: self.seg_idx,
            row_idx: self.row_idx,
            files: self.files.clone(),
        });
        let stream = input
            .map(move |batch| {
                let fetcher = fetcher.clone();
                async move { fetcher.fetch(batch?).await }
            })
            // Overlap object-store reads of consecutive batches, in order.
            .buffered(4);
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

struct Fetcher {
    store: Arc<Store>,
    collection: String,
    schema: SchemaRef,
    sources: Vec<ColumnSource>,
    seg_idx: usize,
    row_idx: usize,
    files: Arc<HashMap<u64, HashMap<String, DataFile>>>,
}

impl Fetcher {
    async fn fetch(&self, batch: RecordBatch) -> DFResult<RecordBatch> {
        let segs = batch.column(self.seg_idx).as_primitive::<UInt64Type>();
        let rows = batch.column(self.row_idx).as_primitive::<UInt32Type>();
        // Runs of rows from one segment (a batch comes from one file, but be general).
        let mut runs: Vec<(u64, usize, usize)> = Vec::new();
        for i in 0..batch.num_rows() {
            let s = segs.value(i);
            match runs.last_mut() {
                Some((seg, _, end)) if *seg == s => *end = i + 1,
                _ => runs.push((s, i, i + 1)),
            }
        }
        let mut columns = Vec::with_capacity(self.sources.len());
        for (out_idx, src) in self.sources.iter().enumerate() {
            let col =
                match src {
                    ColumnSource::Input(i) => batch.column(*i).clone(),
                    ColumnSource::Vector(name) => {
                        let mut parts = Vec::with_capacity(runs.len());
                        for &(seg, start, end) in &runs {
                            let file = self.files.get(&seg).and_then(|m| m.get(name)).ok_or_else(
                                || {
                                    DataFusionError::External(Box::new(Error::Corrupt {
                                        path: format!("{}/insert_log/{seg}", self.collection),
                                        reason: format!(
                                            "segment has no file for vector column '{name}'"
                                        ),
                                    }))
                                },
                            )?;
                            let positions = &rows.values()[start..end];
                            parts.push(self.read_rows(file, positions).await?);
                        }
                        if parts.len() == 1 {
                            parts.pop().unwrap()
                        } else if parts.is_empty() {
                            arrow::array::new_empty_array(self.schema.field(out_idx).data_type())
                        } else {
                            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                            concat(&refs)?
                        }
                    }
                };
            columns.push(col);
        }
        let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &opts,
        )?)
    }

    /// Reads the rows at `positions` (ascending) of a one-column file.
    async fn read_rows(&self, file: &DataFile, positions: &[u32]) -> DFResult<ArrayRef> {
        let path = Store::file_path(&self.collection, &file.path);
        let meta = self.store.reader_metadata(&path, file.size).await?;
        let (Some(&first), Some(&last)) = (positions.first(), positions.last()) else {
            let dt = meta.schema().field(0).data_type().clone();
            return Ok(arrow::array::new_empty_array(&dt));
        };
        // Only the row groups spanning [first, last], and inside them only the
        // selected rows.
        let mut row_groups = Vec::new();
        let mut base = None;
        let mut total = 0usize;
        let mut start = 0u64;
        for (i, rg) in meta.metadata().row_groups().iter().enumerate() {
            let n = rg.num_rows() as u64;
            if start + n > first as u64 && start <= last as u64 {
                row_groups.push(i);
                base.get_or_insert(start);
                total += n as usize;
            }
            start += n;
        }
        let base = base.unwrap_or(0);
        let mut selectors = Vec::new();
        let mut cursor = 0usize;
        let mut k = 0;
        while k < positions.len() {
            let p = (positions[k] as u64 - base) as usize;
            let mut run = 1;
            while k + run < positions.len() && positions[k + run] as u64 - base == (p + run) as u64
            {
                run += 1;
            }
            if p > cursor {
                selectors.push(RowSelector::skip(p - cursor));
            }
            selectors.push(RowSelector::select(run));
            cursor = p + run;
            k += run;
        }
        if cursor < total {
            selectors.push(RowSelector::skip(total - cursor));
        }
        #[allow(deprecated)]
        let reader = ParquetObjectReader::new(self.store.object_store().clone(), path)
            .with_file_size(file.size);
        let mask = ProjectionMask::all();
        let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
            .with_projection(mask)
            .with_row_groups(row_groups)
            .with_row_selection(RowSelection::from(selectors))
            .with_batch_size(positions.len().max(1))
            .build()?;
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(0).as_ref()).collect();
        let out = match arrays.len() {
            0 => {
                return Err(DataFusionError::Internal(
                    "vector fetch returned no rows".into(),
                ))
            }
            1 => batches[0].column(0).clone(),
            _ => concat(&arrays)?,
        };
        if out.len() != positions.len() {
            return Err(DataFusionError::External(Box::new(Error::Corrupt {
                path: file.path.clone(),
                reason: format!("expected {} rows, read {}", positions.len(), out.len()),
            })));
        }
        // The file may carry a differently named element field; present the
        // collection's type.
        let want = self
            .schema
            .fields()
            .iter()
            .find(|f| {
                matches!(f.data_type(), DataType::FixedSizeList(..))
                    && file.columns.contains(f.name())
            })
            .map(|f| f.data_type().clone());
        match want {
            Some(dt) if &dt != out.data_type() => Ok(arrow::compute::cast(&out, &dt)?),
            _ => Ok(out),
        }
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
