//! `quiver_indexes(['collection'])`: the vector indexes of the store (or of
//! one collection), one row each, with how far their files are built.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, Result as DFResult, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::storage::store::Store;

/// Name of the table function.
pub const FUNCTION: &str = "quiver_indexes";

#[derive(Debug)]
pub struct IndexesFunction {
    store: Arc<Store>,
}

impl IndexesFunction {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

impl TableFunctionImpl for IndexesFunction {
    fn call(&self, exprs: &[Expr]) -> DFResult<Arc<dyn TableProvider>> {
        let only = match exprs {
            [] => None,
            [Expr::Literal(ScalarValue::Utf8(Some(name)), _)] => Some(name.clone()),
            _ => {
                return plan_err!(
                    "{FUNCTION}() takes no argument or one: the collection name, as a string"
                )
            }
        };
        if let Some(n) = &only {
            self.store.require(n)?;
        }
        Ok(Arc::new(IndexesTable {
            store: self.store.clone(),
            only,
        }))
    }
}

/// The rows of `quiver_indexes`, read when the query runs (a prepared
/// statement run again sees the builds done meanwhile).
#[derive(Debug)]
struct IndexesTable {
    store: Arc<Store>,
    only: Option<String>,
}

const TEXT: [&str; 7] = [
    "index_name",
    "collection",
    "column_name",
    "index_type",
    "metric",
    "parameters",
    "state",
];
const COUNTS: [&str; 3] = ["segments_indexed", "segments_total", "bytes"];

fn schema() -> SchemaRef {
    let mut fields: Vec<Field> = TEXT
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, false))
        .collect();
    fields.extend(
        COUNTS
            .iter()
            .map(|n| Field::new(*n, DataType::UInt64, false)),
    );
    Arc::new(Schema::new(fields))
}

impl IndexesTable {
    fn rows(&self) -> DFResult<RecordBatch> {
        let names = match &self.only {
            Some(n) => {
                self.store.require(n)?;
                vec![n.clone()]
            }
            None => self.store.collection_names(),
        };
        let mut rows: Vec<[String; 7]> = Vec::new();
        let mut numbers: Vec<[u64; 3]> = Vec::new();
        for name in names {
            let Some(m) = self.store.snapshot(&name) else {
                continue;
            };
            for st in self.store.index_status(&m) {
                rows.push([
                    st.def.name.clone(),
                    name.clone(),
                    st.def.column.clone(),
                    st.def.kind.name().to_string(),
                    st.def.metric.name().to_string(),
                    st.def.parameters(),
                    st.state().to_string(),
                ]);
                numbers.push([
                    st.segments_indexed as u64,
                    st.segments_total as u64,
                    st.bytes,
                ]);
            }
        }
        let mut columns: Vec<ArrayRef> = (0..TEXT.len())
            .map(|i| {
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r[i]))) as ArrayRef
            })
            .collect();
        columns.extend((0..COUNTS.len()).map(|i| {
            Arc::new(UInt64Array::from_iter_values(numbers.iter().map(|r| r[i]))) as ArrayRef
        }));
        Ok(RecordBatch::try_new(schema(), columns)?)
    }
}

#[async_trait::async_trait]
impl TableProvider for IndexesTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let table = MemTable::try_new(schema(), vec![vec![self.rows()?]])?;
        table.scan(state, projection, filters, limit).await
    }
}
