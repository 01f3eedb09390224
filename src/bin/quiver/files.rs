//! Files in and out of the command line: reading Parquet, CSV, Arrow IPC
//! and newline-delimited JSON for `quiver ingest`, and writing query
//! results as an aligned table, CSV, JSON lines or Parquet for `quiver sql`.

use std::fs::File;
use std::io::{BufReader, Seek, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, RecordBatch, RecordBatchReader, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use quiver::{Error, Result};

/// Rows per batch read from a file.
pub const BATCH_ROWS: usize = 8192;

/// Formats `quiver ingest` reads, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Parquet,
    Csv,
    Ipc,
    Json,
}

impl InputFormat {
    /// The format of `path`, from its extension.
    pub fn of(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        Ok(match ext.as_deref() {
            Some("parquet" | "pq") => Self::Parquet,
            Some("csv") => Self::Csv,
            Some("arrow" | "arrows" | "ipc" | "feather") => Self::Ipc,
            Some("json" | "ndjson" | "jsonl") => Self::Json,
            _ => {
                return Err(Error::invalid(format!(
                    "'{}': unknown file type (use .parquet, .csv, .arrow/.arrows/.ipc, or .json/.ndjson/.jsonl with one object per line)",
                    path.display()
                )))
            }
        })
    }
}

/// Batches of one input file.
pub struct InputFile {
    pub schema: SchemaRef,
    /// Rows in the file, when the format says so up front (Parquet).
    pub rows: Option<u64>,
    pub batches: Box<dyn Iterator<Item = Result<RecordBatch>> + Send>,
}

/// Opens `path` for reading in batches. Variable-length lists of numbers
/// (how JSON arrays arrive) become `FixedSizeList<Float32>` vectors; every
/// row must then have the dimension of the first.
pub fn open_input(path: &Path) -> Result<InputFile> {
    let format = InputFormat::of(path)?;
    let named = |e: &dyn std::fmt::Display| Error::invalid(format!("'{}': {e}", path.display()));
    let file = File::open(path).map_err(|e| named(&e))?;
    let (schema, rows, batches): (
        SchemaRef,
        Option<u64>,
        Box<dyn Iterator<Item = Result<RecordBatch>> + Send>,
    ) = match format {
        InputFormat::Parquet => {
            let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| named(&e))?;
            let rows = b.metadata().file_metadata().num_rows() as u64;
            let r = b
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| named(&e))?;
            (
                r.schema(),
                Some(rows),
                Box::new(r.map(|b| b.map_err(Error::from))),
            )
        }
        InputFormat::Csv => {
            let mut file = file;
            let (schema, _) = arrow::csv::reader::Format::default()
                .with_header(true)
                .infer_schema(&mut file, Some(10_000))
                .map_err(|e| named(&e))?;
            file.rewind().map_err(|e| named(&e))?;
            let schema = Arc::new(schema);
            let r = arrow::csv::ReaderBuilder::new(schema.clone())
                .with_header(true)
                .with_batch_size(BATCH_ROWS)
                .build(file)
                .map_err(|e| named(&e))?;
            (schema, None, Box::new(r.map(|b| b.map_err(Error::from))))
        }
        InputFormat::Ipc => {
            // The file format first; else the stream format.
            match arrow::ipc::reader::FileReader::try_new(BufReader::new(file), None) {
                Ok(r) => (
                    r.schema(),
                    None,
                    Box::new(r.map(|b| b.map_err(Error::from))),
                ),
                Err(_) => {
                    let file = File::open(path).map_err(|e| named(&e))?;
                    let r = arrow::ipc::reader::StreamReader::try_new(BufReader::new(file), None)
                        .map_err(|e| named(&e))?;
                    (
                        r.schema(),
                        None,
                        Box::new(r.map(|b| b.map_err(Error::from))),
                    )
                }
            }
        }
        InputFormat::Json => {
            let mut reader = BufReader::new(file);
            let (schema, _) = arrow::json::reader::infer_json_schema(&mut reader, Some(10_000))
                .map_err(|e| named(&e))?;
            reader.rewind().map_err(|e| named(&e))?;
            let schema = Arc::new(schema);
            let r = arrow::json::ReaderBuilder::new(schema.clone())
                .with_batch_size(BATCH_ROWS)
                .build(reader)
                .map_err(|e| named(&e))?;
            (schema, None, Box::new(r.map(|b| b.map_err(Error::from))))
        }
    };
    let has_lists = schema.fields().iter().any(|f| number_list(f.data_type()));
    if !has_lists {
        return Ok(InputFile {
            schema,
            rows,
            batches,
        });
    }
    // Vectors: the first batch fixes each list column's dimension.
    let mut batches = batches.peekable();
    let dims: Vec<Option<i32>> = match batches.peek() {
        Some(Ok(first)) => first
            .columns()
            .iter()
            .map(|c| first_len(c.as_ref()))
            .collect(),
        _ => schema.fields().iter().map(|_| None).collect(),
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(&dims)
        .map(|(f, d)| match d {
            Some(d) if number_list(f.data_type()) => Field::new(
                f.name(),
                quiver::storage::vector_type(*d as usize),
                f.is_nullable(),
            ),
            _ => f.as_ref().clone(),
        })
        .collect();
    let fixed = Arc::new(Schema::new(fields));
    let out = fixed.clone();
    let display = path.display().to_string();
    let mut row = 0u64;
    Ok(InputFile {
        schema: fixed,
        rows,
        batches: Box::new(batches.map(move |b| {
            let b = b?;
            let cols = b
                .columns()
                .iter()
                .zip(out.fields())
                .map(|(c, f)| to_vector(c, f, &display, row))
                .collect::<Result<Vec<_>>>()?;
            row += b.num_rows() as u64;
            Ok(RecordBatch::try_new(out.clone(), cols)?)
        })),
    })
}

fn number_list(dt: &DataType) -> bool {
    match dt {
        DataType::List(item) | DataType::LargeList(item) => item.data_type().is_numeric(),
        _ => false,
    }
}

/// The length of the first non-null list in `c`, if it is a list column.
fn first_len(c: &dyn Array) -> Option<i32> {
    let l = c.as_list_opt::<i32>()?;
    (0..l.len())
        .find(|i| l.is_valid(*i))
        .map(|i| l.value_length(i))
}

/// A list column as `FixedSizeList<Float32, d>` (`f` says `d`).
fn to_vector(c: &ArrayRef, f: &Field, file: &str, first_row: u64) -> Result<ArrayRef> {
    let DataType::FixedSizeList(_, d) = f.data_type() else {
        return Ok(c.clone());
    };
    let Some(l) = c.as_list_opt::<i32>() else {
        return Ok(c.clone());
    };
    for i in 0..l.len() {
        if l.is_valid(i) && l.value_length(i) != *d {
            return Err(Error::invalid(format!(
                "'{file}', row {}: column '{}' has {} numbers, but the first row had {d}",
                first_row + i as u64 + 1,
                f.name(),
                l.value_length(i)
            )));
        }
    }
    // Null rows become d zeros behind a null bit.
    let mut values: Vec<f32> = Vec::with_capacity(l.len() * *d as usize);
    let floats = arrow::compute::cast(l.values(), &DataType::Float32)?;
    let floats = floats.as_primitive::<arrow::datatypes::Float32Type>();
    let offsets = l.value_offsets();
    for i in 0..l.len() {
        if l.is_valid(i) {
            let (s, e) = (offsets[i] as usize, offsets[i + 1] as usize);
            values.extend_from_slice(&floats.values()[s..e]);
        } else {
            values.extend(std::iter::repeat_n(0.0, *d as usize));
        }
    }
    Ok(Arc::new(FixedSizeListArray::try_new(
        quiver::storage::vector_item_field(),
        *d,
        Arc::new(arrow::array::Float32Array::from(values)),
        l.nulls().cloned(),
    )?))
}

/// How `quiver sql` prints a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned table.
    Table,
    /// CSV with a header; vectors as `[1.0, 2.0]`.
    Csv,
    /// One JSON object per line; vectors as arrays.
    Json,
    /// A Parquet file (needs --output).
    Parquet,
}

/// Writes `batches` in `format` to `out`.
pub fn write_result(
    batches: &[RecordBatch],
    schema: SchemaRef,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    match format {
        OutputFormat::Table => {
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(batches)?
            )?;
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(flat_schema(&schema)))?;
            }
            for b in batches {
                w.write(&flatten(b)?)?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs)?;
            w.finish()?;
        }
        OutputFormat::Parquet => {
            let mut w = parquet::arrow::ArrowWriter::try_new(out, schema, None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
    }
    Ok(())
}

/// `schema` with nested columns as text (what CSV can hold).
fn flat_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                if f.data_type().is_nested() {
                    Field::new(f.name(), DataType::Utf8, true)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect::<Vec<_>>(),
    ))
}

/// Nested columns (vectors) rendered as text, for CSV.
fn flatten(b: &RecordBatch) -> Result<RecordBatch> {
    let schema = flat_schema(&b.schema());
    let options = arrow::util::display::FormatOptions::default();
    let cols = b
        .columns()
        .iter()
        .map(|c| {
            if !c.data_type().is_nested() {
                return Ok(c.clone());
            }
            let f = arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options)?;
            let texts: StringArray = (0..c.len())
                .map(|i| c.is_valid(i).then(|| f.value(i).to_string()))
                .collect();
            Ok(Arc::new(texts) as ArrayRef)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, cols)?)
}
