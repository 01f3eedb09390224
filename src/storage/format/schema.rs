//! `CollectionSchema`: the columns of a collection, its primary key, and how
//! incoming Arrow data is checked and conformed to it.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, AsArray, FixedSizeListArray, RecordBatch};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::util::display::FormatOptions;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Hidden system column: commit timestamp of the row (hybrid clock).
pub const TS_COLUMN: &str = "_ts";
/// Hidden system column: id of the segment a row is stored in.
pub const SEG_COLUMN: &str = "_seg";
/// Hidden system column: position of the row inside its segment.
pub const ROW_COLUMN: &str = "_row";
/// Hidden system column: the generated key of a collection without a
/// declared primary key (Milvus's `auto_id`). Stored like a key column,
/// shown only when a statement names it.
pub const ID_COLUMN: &str = "_id";

/// The convention: a column of this name is the primary key unless
/// another is declared.
pub const CONVENTIONAL_KEY: &str = "id";

const RESERVED: [&str; 4] = [TS_COLUMN, SEG_COLUMN, ROW_COLUMN, ID_COLUMN];

/// The kind of a column, which decides the column group it is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    PrimaryKey,
    Scalar,
    /// `FixedSizeList<Float32 | Float16 | Int8, dim>`, stored in a column
    /// group of its own.
    Vector {
        dim: usize,
    },
}

/// Columns and primary key of a collection, as stored in its manifest.
///
/// A collection whose key was declared (`PRIMARY KEY`, a column named
/// `id`, or an ingest option) upserts by it. One without a declared key
/// gets a generated key, the hidden column [`ID_COLUMN`] (`auto_id`),
/// stored as the last field; its writes append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionSchema {
    primary_key: String,
    fields: Vec<FieldRef>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    auto_id: bool,
}

/// The canonical element field of a vector column.
pub fn vector_item_field() -> FieldRef {
    vector_item_field_of(DataType::Float32)
}

/// The canonical element field of a vector column of `element`s
/// (`Float32`, `Float16` or `Int8`).
pub fn vector_item_field_of(element: DataType) -> FieldRef {
    Arc::new(Field::new("item", element, true))
}

/// Whether vectors may have elements of type `t`: float32 (`FLOAT[d]`),
/// float16 (`FLOAT16[d]`, FLOAT16_VECTOR) and int8 (`TINYINT[d]`, INT8_VECTOR).
pub fn is_vector_element(t: &DataType) -> bool {
    matches!(t, DataType::Float32 | DataType::Float16 | DataType::Int8)
}

/// `FixedSizeList<Float32, dim>` with the canonical element field.
pub fn vector_type(dim: usize) -> DataType {
    DataType::FixedSizeList(vector_item_field(), dim as i32)
}

impl CollectionSchema {
    /// Builds a collection schema from an Arrow schema. The primary key is
    /// `declared_pk` if given, else the column named `id`; without either
    /// the collection gets a generated hidden key ([`ID_COLUMN`]) and its
    /// writes append. Never "the first column": an ordinary table's rows
    /// must not collapse by whatever column comes first.
    pub fn infer(collection: &str, schema: &Schema, declared_pk: Option<&str>) -> Result<Self> {
        Self::infer_with(
            collection,
            schema,
            declared_pk,
            crate::storage::config::DEFAULT_MAX_DIMENSION,
        )
    }

    /// [`CollectionSchema::infer`] with a limit on vector dimensions.
    pub fn infer_with(
        collection: &str,
        schema: &Schema,
        declared_pk: Option<&str>,
        max_dimension: usize,
    ) -> Result<Self> {
        validate_name("collection", collection)?;
        if schema.fields().is_empty() {
            return Err(Error::invalid(format!(
                "collection '{collection}' needs at least one column"
            )));
        }
        let pk = match declared_pk {
            Some(pk) => Some(pk.to_string()),
            None if schema.field_with_name(CONVENTIONAL_KEY).is_ok() => {
                Some(CONVENTIONAL_KEY.to_string())
            }
            None => None,
        };
        let mut fields = Vec::with_capacity(schema.fields().len() + 1);
        for f in schema.fields() {
            validate_name("column", f.name())?;
            if fields.iter().any(|g: &FieldRef| g.name() == f.name()) {
                return Err(Error::invalid(format!(
                    "column '{}' appears twice in collection '{collection}'",
                    f.name()
                )));
            }
            let dt = canonical_type(collection, f, max_dimension)?;
            let is_pk = pk.as_deref() == Some(f.name().as_str());
            if is_pk && !is_key_type(&dt) {
                return Err(Error::invalid(format!(
                    "primary key column '{}' of collection '{collection}' must have an integer type \
                     (TINYINT .. BIGINT, signed or unsigned) or a string type (VARCHAR), not {}",
                    f.name(),
                    f.data_type()
                )));
            }
            // A primary key is never null; everything else keeps its nullability.
            let nullable = f.is_nullable() && !is_pk;
            fields.push(Arc::new(
                Field::new(f.name(), dt, nullable).with_metadata(Default::default()),
            ));
        }
        let (primary_key, auto_id) = match pk {
            Some(pk) => {
                if !fields.iter().any(|f| f.name() == &pk) {
                    return Err(Error::invalid(format!(
                        "primary key column '{pk}' is not a column of collection '{collection}'"
                    )));
                }
                (pk, false)
            }
            None => {
                fields.push(Arc::new(Field::new(ID_COLUMN, DataType::Int64, false)));
                (ID_COLUMN.to_string(), true)
            }
        };
        Ok(Self {
            primary_key,
            fields,
            auto_id,
        })
    }

    /// Whether the key is generated ([`ID_COLUMN`]): writes append.
    pub fn auto_id(&self) -> bool {
        self.auto_id
    }

    /// The declared primary key, if there is one (`None` for `auto_id`).
    pub fn declared_key(&self) -> Option<&str> {
        (!self.auto_id).then_some(self.primary_key.as_str())
    }

    /// The columns a user sees and writes: every stored column but the
    /// generated key.
    pub fn visible_fields(&self) -> &[FieldRef] {
        if self.auto_id {
            &self.fields[..self.fields.len() - 1]
        } else {
            &self.fields
        }
    }

    /// The user-visible table schema (no system columns, no generated key).
    pub fn table_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.visible_fields().to_vec()))
    }

    pub fn primary_key(&self) -> &str {
        &self.primary_key
    }

    pub fn fields(&self) -> &[FieldRef] {
        &self.fields
    }

    /// The stored columns in order: the user's, then the generated key if
    /// any (no `_ts`, `_seg`, `_row`).
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.fields.clone()))
    }

    pub fn kind(&self, field: &Field) -> ColumnKind {
        if field.name() == &self.primary_key {
            return ColumnKind::PrimaryKey;
        }
        match field.data_type() {
            DataType::FixedSizeList(_, d) => ColumnKind::Vector { dim: *d as usize },
            _ => ColumnKind::Scalar,
        }
    }

    pub fn is_vector(&self, name: &str) -> bool {
        self.fields
            .iter()
            .find(|f| f.name() == name)
            .is_some_and(|f| matches!(self.kind(f), ColumnKind::Vector { .. }))
    }

    /// Schema of the scalar column group file: primary key and scalar columns
    /// in collection order, then `_ts`, `_seg`, `_row`.
    pub fn scalar_group_schema(&self) -> SchemaRef {
        let mut fields: Vec<FieldRef> = self
            .fields
            .iter()
            .filter(|f| !matches!(self.kind(f), ColumnKind::Vector { .. }))
            .cloned()
            .collect();
        fields.push(Arc::new(Field::new(TS_COLUMN, DataType::UInt64, false)));
        fields.push(Arc::new(Field::new(SEG_COLUMN, DataType::UInt64, false)));
        fields.push(Arc::new(Field::new(ROW_COLUMN, DataType::UInt32, false)));
        Arc::new(Schema::new(fields))
    }

    /// Names of the vector columns, in collection order.
    pub fn vector_columns(&self) -> Vec<&FieldRef> {
        self.fields
            .iter()
            .filter(|f| matches!(self.kind(f), ColumnKind::Vector { .. }))
            .collect()
    }

    /// Checks a batch against the schema and returns it in the collection's
    /// column order and types. Errors name the column and row at fault.
    ///
    /// For a collection with a generated key the input must not carry
    /// [`ID_COLUMN`]; the result has it filled with zeros, for the writer
    /// to number with [`CollectionSchema::number_rows`] when it takes the
    /// write's timestamp.
    pub fn conform(&self, collection: &str, batch: &RecordBatch) -> Result<RecordBatch> {
        self.conform_keyed(collection, batch, false)
    }

    /// [`CollectionSchema::conform`]; with `keys_given`, a generated key
    /// comes with the input (an UPDATE writes rows back under their keys).
    pub fn conform_keyed(
        &self,
        collection: &str,
        batch: &RecordBatch,
        keys_given: bool,
    ) -> Result<RecordBatch> {
        let input = batch.schema();
        let generated = self.auto_id && !keys_given;
        for f in input.fields() {
            if generated && f.name() == ID_COLUMN {
                return Err(Error::invalid(format!(
                    "column '{ID_COLUMN}' of collection '{collection}' is generated by quiver \
                     (the collection has no declared primary key); leave it out of the input"
                )));
            }
            if !self.fields.iter().any(|g| g.name() == f.name()) {
                let names: Vec<&str> = self
                    .visible_fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                return Err(Error::invalid(format!(
                    "unknown column '{}' for collection '{collection}' (its columns are: {})",
                    f.name(),
                    names.join(", ")
                )));
            }
        }
        let mut columns = Vec::with_capacity(self.fields.len());
        for target in &self.fields {
            if generated && target.name() == ID_COLUMN {
                columns.push(
                    Arc::new(arrow::array::Int64Array::from(vec![0i64; batch.num_rows()]))
                        as ArrayRef,
                );
                continue;
            }
            let col = match input.index_of(target.name()) {
                Ok(i) => conform_column(collection, target, self.kind(target), batch.column(i))?,
                Err(_) if target.is_nullable() => {
                    new_null_array(target.data_type(), batch.num_rows())
                }
                Err(_) => {
                    return Err(Error::invalid(format!(
                        "column '{}' of collection '{collection}' is missing from the input and may not be null{}",
                        target.name(),
                        if target.name() == &self.primary_key { " (it is the primary key)" } else { "" }
                    )))
                }
            };
            if !target.is_nullable() && col.null_count() > 0 {
                let row = (0..col.len()).find(|&i| col.is_null(i)).unwrap_or(0);
                let what = if target.name() == &self.primary_key {
                    "primary key column"
                } else {
                    "non-nullable column"
                };
                return Err(Error::invalid(format!(
                    "{what} '{}' of collection '{collection}' is null at row {row}",
                    target.name()
                )));
            }
            if target.name() == &self.primary_key {
                check_key_range(collection, target.name(), &col)?;
            }
            columns.push(col);
        }
        Ok(RecordBatch::try_new(self.arrow_schema(), columns)?)
    }

    /// Numbers the rows of `batches` (conformed, of a collection with a
    /// generated key) `first`, `first + 1`, ... in [`ID_COLUMN`].
    pub fn number_rows(&self, batches: Vec<RecordBatch>, first: u64) -> Result<Vec<RecordBatch>> {
        let id_idx = self.fields.len() - 1;
        let mut next = first as i64;
        batches
            .into_iter()
            .map(|b| {
                let n = b.num_rows() as i64;
                let ids: ArrayRef =
                    Arc::new(arrow::array::Int64Array::from_iter_values(next..next + n));
                next += n;
                let mut cols = b.columns().to_vec();
                cols[id_idx] = ids;
                Ok(RecordBatch::try_new(b.schema(), cols)?)
            })
            .collect()
    }
}

/// Integer keys are handled as `i64`: an unsigned key above `i64::MAX`
/// is refused, naming its row.
fn check_key_range(collection: &str, name: &str, col: &ArrayRef) -> Result<()> {
    if let DataType::UInt64 = col.data_type() {
        let keys = col.as_primitive::<arrow::datatypes::UInt64Type>();
        if let Some(row) = (0..keys.len()).find(|&i| keys.value(i) > i64::MAX as u64) {
            return Err(Error::invalid(format!(
                "primary key column '{name}' of collection '{collection}' has {} at row {row}, \
                 above the largest key ({})",
                keys.value(row),
                i64::MAX
            )));
        }
    }
    Ok(())
}

/// Collection and column names become object-store paths and SQL identifiers,
/// so they are kept to a safe alphabet.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(Error::invalid(format!(
            "invalid {what} name '{name}': use letters, digits and '_' (at most 255, not starting with a digit)"
        )));
    }
    if what == "collection" && name == crate::storage::config::WAL_DIR_NAME {
        return Err(Error::invalid(format!(
            "collection name '{name}' is reserved (the write-ahead log's directory)"
        )));
    }
    if what == "column" && RESERVED.contains(&name) {
        return Err(Error::invalid(format!(
            "column name '{name}' is reserved for a system column"
        )));
    }
    Ok(())
}

/// Maps a user's Arrow type to the type quiver stores. Most types are
/// stored as they come; the exceptions (documented in docs/sql.md):
/// `LargeUtf8` and `Utf8View` are stored as `Utf8`, `LargeBinary` and
/// `BinaryView` as `Binary`, `LargeList` as `List`, a dictionary-encoded
/// column (a pandas categorical) as its values' type, and a scalar
/// `Float16` as `Float32`.
fn canonical_type(collection: &str, f: &Field, max_dimension: usize) -> Result<DataType> {
    use DataType::*;
    let dt = f.data_type();
    let refuse = |why: String| -> Result<DataType> {
        Err(Error::invalid(format!(
            "column '{}' of collection '{collection}' {why}",
            f.name()
        )))
    };
    Ok(match dt {
        Utf8 | LargeUtf8 | Utf8View => Utf8,
        Binary | LargeBinary | BinaryView => Binary,
        Float16 => Float32,
        Boolean
        | Int8
        | Int16
        | Int32
        | Int64
        | UInt8
        | UInt16
        | UInt32
        | UInt64
        | Float32
        | Float64
        | Date32
        | Date64
        | Timestamp(_, _)
        | Time32(_)
        | Time64(_)
        | Duration(_)
        | FixedSizeBinary(_) => dt.clone(),
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) if *s >= 0 => Decimal128(*p, *s),
        Decimal256(p, s) if *s >= 0 => dt.clone(),
        Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => {
            // Parquet's DECIMAL has no negative scale.
            return refuse(format!(
                "has type {dt}: a negative decimal scale cannot be stored (Parquet's DECIMAL needs \
                 0 <= scale <= precision); use a scale of 0"
            ));
        }
        Dictionary(_, values) => {
            let inner = Field::new(f.name(), values.as_ref().clone(), f.is_nullable());
            return canonical_type(collection, &inner, max_dimension);
        }
        FixedSizeList(item, d) if is_vector_element(item.data_type()) => {
            let d = *d;
            if d <= 0 {
                return refuse(format!(
                    "is a vector of dimension {d}; a vector needs at least one element"
                ));
            }
            if d as usize > max_dimension {
                return refuse(format!(
                    "is a vector of dimension {d}, above the limit of {max_dimension} \
                     (--max-dimension)"
                ));
            }
            FixedSizeList(vector_item_field_of(item.data_type().clone()), d)
        }
        FixedSizeList(item, _) if item.data_type().is_numeric() => {
            return Err(Error::invalid(format!(
                "vector column '{}' of collection '{collection}' must have FLOAT (Float32), \
                 FLOAT16 (Float16) or TINYINT (Int8) elements, not {}",
                f.name(),
                item.data_type()
            )))
        }
        FixedSizeList(item, _)
        | List(item)
        | LargeList(item)
        | ListView(item)
        | LargeListView(item)
            if item.data_type().is_floating() =>
        {
            return refuse(format!(
                "is a variable-length list of {} ({dt}); a vector column needs a fixed \
                 dimension: FLOAT[d] in SQL, FixedSizeList<Float32, d> in Arrow \
                 (pyarrow: pa.list_(pa.float32(), d))",
                item.data_type()
            ))
        }
        FixedSizeList(item, _)
        | List(item)
        | LargeList(item)
        | ListView(item)
        | LargeListView(item) => {
            if matches!(item.data_type(), Null) {
                return refuse(format!(
                    "is a list of nulls ({dt}); give its elements a type"
                ));
            }
            List(item.clone())
        }
        Struct(children) if !children.is_empty() => dt.clone(),
        Null => {
            return refuse(
                "has type Null (every value is null, so its type is unknown); give it a type, \
                 e.g. with pyarrow: table.cast(schema)"
                    .to_string(),
            )
        }
        other => return refuse(format!("has type {other}, which quiver does not store")),
    })
}

/// Whether `t` can be a primary key: an integer or a string.
pub fn is_key_type(t: &DataType) -> bool {
    use DataType::*;
    matches!(
        t,
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Utf8
    )
}

fn conform_column(
    collection: &str,
    target: &Field,
    kind: ColumnKind,
    col: &ArrayRef,
) -> Result<ArrayRef> {
    let from = col.data_type();
    let to = target.data_type();
    if from == to {
        return check_vector(collection, target, kind, col.clone());
    }
    let mismatch = || {
        Error::invalid(format!(
            "column '{}' of collection '{collection}' has type {to}, but the input has {from}",
            target.name()
        ))
    };
    if let ColumnKind::Vector { dim } = kind {
        let got = match from {
            DataType::FixedSizeList(_, d) => Some(*d as usize),
            DataType::List(_) | DataType::LargeList(_) => None,
            _ => return Err(mismatch()),
        };
        if let Some(got) = got {
            if got != dim {
                return Err(Error::invalid(format!(
                    "vector column '{}' of collection '{collection}' has dimension {dim}, but the input has dimension {got}",
                    target.name()
                )));
            }
        } else {
            check_list_lengths(collection, target, dim, col)?;
        }
        let cast = cast_with_options(col, to, &strict()).map_err(|e| {
            Error::invalid(format!(
                "vector column '{}' of collection '{collection}': cannot convert {from} to {to}: {e}",
                target.name()
            ))
        })?;
        return check_vector(collection, target, kind, cast);
    }
    if !castable(from, to) {
        return Err(mismatch());
    }
    cast_with_options(col, to, &strict()).map_err(|e| {
        Error::invalid(format!(
            "column '{}' of collection '{collection}': cannot convert {from} to {to}: {e}",
            target.name()
        ))
    })
}

fn strict() -> CastOptions<'static> {
    CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    }
}

/// Conversions allowed on ingest: within numbers, within strings, within
/// binaries, within dates and timestamps, within times, within durations,
/// and from a dictionary to its values. Never text to number.
fn castable(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if let Dictionary(_, values) = from {
        return castable(values, to);
    }
    let family = |t: &DataType| match t {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32
        | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => 1,
        Utf8 | LargeUtf8 | Utf8View => 2,
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => 3,
        Date32 | Date64 | Timestamp(_, _) => 4,
        Boolean => 5,
        Time32(_) | Time64(_) => 6,
        Duration(_) => 7,
        List(_) | LargeList(_) | ListView(_) | LargeListView(_) | FixedSizeList(..) => 8,
        Struct(_) => 9,
        Null => 0,
        _ => -1,
    };
    let (a, b) = (family(from), family(to));
    a == 0 || (a == b && a > 0)
}

fn check_list_lengths(collection: &str, target: &Field, dim: usize, col: &ArrayRef) -> Result<()> {
    let lengths: Vec<usize> = match col.data_type() {
        DataType::List(_) => {
            let l = col
                .as_any()
                .downcast_ref::<arrow::array::ListArray>()
                .unwrap();
            (0..l.len())
                .filter(|&i| l.is_valid(i))
                .map(|i| l.value_length(i) as usize)
                .collect()
        }
        DataType::LargeList(_) => {
            let l = col
                .as_any()
                .downcast_ref::<arrow::array::LargeListArray>()
                .unwrap();
            (0..l.len())
                .filter(|&i| l.is_valid(i))
                .map(|i| l.value_length(i) as usize)
                .collect()
        }
        _ => return Ok(()),
    };
    if let Some(bad) = lengths.iter().find(|&&n| n != dim) {
        return Err(Error::invalid(format!(
            "vector column '{}' of collection '{collection}' has dimension {dim}, but the input has a vector of length {bad}",
            target.name()
        )));
    }
    Ok(())
}

fn check_vector(
    collection: &str,
    target: &Field,
    kind: ColumnKind,
    col: ArrayRef,
) -> Result<ArrayRef> {
    if let ColumnKind::Vector { .. } = kind {
        let list = col
            .as_any()
            .downcast_ref::<FixedSizeListArray>()
            .ok_or_else(|| Error::internal("vector column is not a FixedSizeList"))?;
        // Only elements of non-null vectors matter.
        let values = list.values();
        if values.null_count() > 0 {
            let d = list.value_length() as usize;
            if let Some(row) = (0..list.len())
                .find(|&i| list.is_valid(i) && (0..d).any(|j| values.is_null(i * d + j)))
            {
                return Err(Error::invalid(format!(
                    "vector column '{}' of collection '{collection}' has a null element in the vector at row {row}",
                    target.name()
                )));
            }
        }
    }
    Ok(col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float32Array, Int64Array, StringArray};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8View, true),
            Field::new("v", vector_type(2), true),
        ])
    }

    #[test]
    fn infers_pk_and_normalizes_types() {
        let s = CollectionSchema::infer("docs", &schema(), None).unwrap();
        assert_eq!(s.primary_key(), "id");
        assert!(!s.fields()[0].is_nullable());
        assert_eq!(s.fields()[1].data_type(), &DataType::Utf8);
        assert!(s.is_vector("v"));
        assert_eq!(
            s.scalar_group_schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>(),
            vec!["id", "name", "_ts", "_seg", "_row"]
        );
    }

    #[test]
    fn rejects_bad_pk_and_names() {
        let bad = Schema::new(vec![Field::new("id", DataType::Float64, false)]);
        let e = CollectionSchema::infer("docs", &bad, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("primary key column 'id'"), "{e}");
        let bad = Schema::new(vec![Field::new("_ts", DataType::Int64, false)]);
        assert!(CollectionSchema::infer("docs", &bad, None).is_err());
        assert!(CollectionSchema::infer("../x", &schema(), None).is_err());
    }

    #[test]
    fn conform_checks_dimension_nulls_and_unknown_columns() {
        let s = CollectionSchema::infer("docs", &schema(), None).unwrap();
        let v3 = FixedSizeListArray::new(
            vector_item_field(),
            3,
            Arc::new(Float32Array::from(vec![0.0; 3])),
            None,
        );
        let b = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("v", Arc::new(v3) as ArrayRef),
        ])
        .unwrap();
        let e = s.conform("docs", &b).unwrap_err().to_string();
        assert!(
            e.contains("dimension 2") && e.contains("dimension 3"),
            "{e}"
        );

        let b = RecordBatch::try_from_iter(vec![(
            "id",
            Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
        )])
        .unwrap();
        let e = s.conform("docs", &b).unwrap_err().to_string();
        assert!(
            e.contains("primary key column 'id'") && e.contains("row 1"),
            "{e}"
        );

        let b = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("nme", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        ])
        .unwrap();
        let e = s.conform("docs", &b).unwrap_err().to_string();
        assert!(e.contains("unknown column 'nme'"), "{e}");

        let b = RecordBatch::try_from_iter(vec![(
            "id",
            Arc::new(arrow::array::Int32Array::from(vec![7])) as ArrayRef,
        )])
        .unwrap();
        let out = s.conform("docs", &b).unwrap();
        assert_eq!(out.num_columns(), 3);
        assert_eq!(out.column(0).data_type(), &DataType::Int64);
        assert_eq!(out.column(2).null_count(), 1);
    }
}
