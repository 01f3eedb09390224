//! `CollectionSchema`: the columns of a collection, its primary key, and how
//! incoming Arrow data is checked and conformed to it.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, FixedSizeListArray, RecordBatch};
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

const RESERVED: [&str; 3] = [TS_COLUMN, SEG_COLUMN, ROW_COLUMN];

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionSchema {
    primary_key: String,
    fields: Vec<FieldRef>,
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
    /// `declared_pk` if given, else the column named `id`, else the first.
    pub fn infer(collection: &str, schema: &Schema, declared_pk: Option<&str>) -> Result<Self> {
        validate_name("collection", collection)?;
        if schema.fields().is_empty() {
            return Err(Error::invalid(format!(
                "collection '{collection}' needs at least one column"
            )));
        }
        let pk = match declared_pk {
            Some(pk) => pk.to_string(),
            None if schema.field_with_name("id").is_ok() => "id".to_string(),
            None => schema.field(0).name().clone(),
        };
        let mut fields = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            validate_name("column", f.name())?;
            if fields.iter().any(|g: &FieldRef| g.name() == f.name()) {
                return Err(Error::invalid(format!(
                    "column '{}' appears twice in collection '{collection}'",
                    f.name()
                )));
            }
            let dt = canonical_type(collection, f)?;
            let is_pk = f.name() == &pk;
            if is_pk && !matches!(dt, DataType::Int64 | DataType::Utf8) {
                return Err(Error::invalid(format!(
                    "primary key column '{}' of collection '{collection}' must be BIGINT (Int64) or VARCHAR (Utf8), not {}",
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
        if !fields.iter().any(|f| f.name() == &pk) {
            return Err(Error::invalid(format!(
                "primary key column '{pk}' is not a column of collection '{collection}'"
            )));
        }
        Ok(Self {
            primary_key: pk,
            fields,
        })
    }

    pub fn primary_key(&self) -> &str {
        &self.primary_key
    }

    pub fn fields(&self) -> &[FieldRef] {
        &self.fields
    }

    /// The user-visible table schema (no system columns).
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
    pub fn conform(&self, collection: &str, batch: &RecordBatch) -> Result<RecordBatch> {
        let input = batch.schema();
        for f in input.fields() {
            if !self.fields.iter().any(|g| g.name() == f.name()) {
                let names: Vec<&str> = self.fields.iter().map(|f| f.name().as_str()).collect();
                return Err(Error::invalid(format!(
                    "unknown column '{}' for collection '{collection}' (its columns are: {})",
                    f.name(),
                    names.join(", ")
                )));
            }
        }
        let mut columns = Vec::with_capacity(self.fields.len());
        for target in &self.fields {
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
            columns.push(col);
        }
        Ok(RecordBatch::try_new(self.arrow_schema(), columns)?)
    }
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
    if what == "collection" && name == crate::wal::WAL_DIR_NAME {
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

/// Maps a user's Arrow type to the type quiver stores.
fn canonical_type(collection: &str, f: &Field) -> Result<DataType> {
    use DataType::*;
    let dt = f.data_type();
    Ok(match dt {
        Utf8 | LargeUtf8 | Utf8View => Utf8,
        Binary | LargeBinary | BinaryView => Binary,
        Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float32
        | Float64 | Date32 | Date64 | Timestamp(_, _) => dt.clone(),
        FixedSizeList(item, d) if *d > 0 && is_vector_element(item.data_type()) => {
            FixedSizeList(vector_item_field_of(item.data_type().clone()), *d)
        }
        FixedSizeList(item, _) => {
            return Err(Error::invalid(format!(
                "vector column '{}' of collection '{collection}' must have FLOAT (Float32), FLOAT16 (Float16) or TINYINT (Int8) elements, not {}",
                f.name(),
                item.data_type()
            )))
        }
        List(_) | LargeList(_) | ListView(_) | LargeListView(_) => {
            return Err(Error::invalid(format!(
                "column '{}' of collection '{collection}' is a variable-length list ({dt}); vector columns need a fixed dimension: FLOAT[d] in SQL, FixedSizeList<Float32, d> in Arrow",
                f.name()
            )))
        }
        other => {
            return Err(Error::invalid(format!(
                "column '{}' of collection '{collection}' has type {other}, which quiver does not store yet",
                f.name()
            )))
        }
    })
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
/// binaries, within dates and timestamps. Never text to number.
fn castable(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let family = |t: &DataType| match t {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32
        | Float64 => 1,
        Utf8 | LargeUtf8 | Utf8View => 2,
        Binary | LargeBinary | BinaryView => 3,
        Date32 | Date64 | Timestamp(_, _) => 4,
        Boolean => 5,
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
