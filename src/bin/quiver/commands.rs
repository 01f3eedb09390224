//! What `quiver sql` and `quiver ingest` do with files: print or write a
//! query's result, and read input files into a collection with a progress
//! bar.

use crate::files;
use crate::{IndexBuildArgs, IngestArgs, IngestModeArg, SqlArgs};
use quiver::Engine;

/// Prints (or writes to `--output`) a result of `quiver sql`.
pub async fn print_result(
    engine: &Engine,
    args: &SqlArgs,
    batches: &[arrow::array::RecordBatch],
) -> quiver::Result<()> {
    use files::OutputFormat;
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => engine.plan(&args.sql).await?.result_schema(),
    };
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|e| {
                quiver::Error::invalid(format!("cannot write '{}': {e}", path.display()))
            })?;
            let mut out = std::io::BufWriter::new(file);
            files::write_result(batches, schema, args.format, &mut out)?;
            std::io::Write::flush(&mut out)?;
            Ok(())
        }
        None if args.format == OutputFormat::Parquet => Err(quiver::Error::invalid(
            "--format parquet needs --output FILE",
        )),
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout());
            files::write_result(batches, schema, args.format, &mut out)?;
            std::io::Write::flush(&mut out)?;
            Ok(())
        }
    }
}

/// `quiver ingest`: every file is checked before anything is written, then
/// each is committed as one write, with a progress bar on a terminal.
pub async fn ingest(args: IngestArgs) -> quiver::Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    use quiver::IngestMode;
    let mut inputs = Vec::with_capacity(args.files.len());
    for path in &args.files {
        inputs.push(files::open_input(path)?);
    }
    let store = match args.store.open_logged(&args.flush).await {
        Err(quiver::Error::Config(msg)) if msg.contains("in use by another") => {
            return Err(quiver::Error::Config(format!(
                "{msg}; a server is running on this store: load the files through it (ADBC adbc_ingest, polars write_database) or stop it first"
            )))
        }
        other => other?,
    };
    let total: Option<u64> = inputs.iter().map(|i| i.rows).sum();
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows ({per_sec}, ETA {eta})",
            )
            .expect("valid template"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {human_pos} rows ({per_sec})")
                .expect("valid template"),
        ),
    };
    let mut rows = 0u64;
    for (i, (path, input)) in args.files.iter().zip(inputs).enumerate() {
        let mode = match (args.mode, i) {
            (IngestModeArg::Create, 0) => IngestMode::CREATE,
            (IngestModeArg::Replace, 0) => IngestMode::REPLACE,
            (IngestModeArg::Append, 0) => IngestMode::CREATE_APPEND,
            _ => IngestMode::APPEND,
        };
        bar.set_message(path.display().to_string());
        let progress = bar.clone();
        let batches = futures::stream::iter(input.batches.inspect(move |b| {
            if let Ok(b) = b {
                progress.inc(b.num_rows() as u64);
            }
        }));
        let n = store
            .ingest(
                &args.collection,
                input.schema,
                batches,
                mode,
                args.primary_key.as_deref(),
            )
            .await
            .map_err(|e| quiver::Error::invalid(format!("'{}': {e}", path.display())))?;
        rows += n;
    }
    store.flush_all().await?;
    bar.finish_and_clear();
    let version = store.require(&args.collection)?.version;
    println!(
        "ingested {rows} rows from {} file(s) into '{}' (version {version})",
        args.files.len(),
        args.collection
    );
    Ok(())
}

/// `quiver index build`: builds the missing index files of a collection,
/// one segment at a time (each committed as it completes), with a
/// progress bar.
pub async fn build_index(args: IndexBuildArgs) -> quiver::Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    let store = args.store.open().await?;
    let started = std::time::Instant::now();
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} segments (ETA {eta})",
        )
        .expect("valid template"),
    );
    let progress = bar.clone();
    let report = store
        .build_indexes(
            &args.collection,
            args.index.as_deref(),
            &move |done, total| {
                progress.set_length(total as u64);
                progress.set_position(done as u64);
            },
        )
        .await?;
    bar.finish_and_clear();
    println!(
        "built {} index file(s) of '{}' ({} bytes) in {:.1}s{}",
        report.built,
        args.collection,
        report.bytes,
        started.elapsed().as_secs_f64(),
        if report.lost > 0 {
            format!("; {} segment(s) were compacted away meanwhile", report.lost)
        } else {
            String::new()
        }
    );
    Ok(())
}
