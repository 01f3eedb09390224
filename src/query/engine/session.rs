//! The DataFusion session quiver plans in: its configuration, and what
//! `register` adds to any `SessionContext` (the catalog, the object store,
//! the functions, operators, rules and the `FLOAT[d]` type).

use crate::query::collection::{QuiverCatalog, CATALOG, SCHEMA};
use crate::query::functions::distance::register_distance_functions;
use crate::storage::Store;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::prelude::{SessionConfig, SessionContext};
use std::sync::Arc;

/// Registers a store with a DataFusion `SessionContext`: its object store,
/// the `quiver` catalog and the distance functions. This is all an embedding
/// application needs to query collections from its own context.
pub fn register(ctx: &SessionContext, store: Arc<Store>) {
    register_with(ctx, store, false);
}

pub(crate) fn register_with(ctx: &SessionContext, store: Arc<Store>, system_columns: bool) {
    ctx.runtime_env()
        .register_object_store(store.store_url(), store.object_store().clone());
    ctx.register_catalog(
        CATALOG,
        Arc::new(QuiverCatalog::with_system_columns(
            store.clone(),
            system_columns,
        )),
    );
    ctx.register_udtf(
        crate::query::collection::snapshot::FUNCTION,
        Arc::new(crate::query::collection::snapshot::SnapshotFunction::new(
            store.clone(),
            system_columns,
        )),
    );
    ctx.register_udtf(
        crate::query::collection::indexes::FUNCTION,
        Arc::new(crate::query::collection::indexes::IndexesFunction::new(
            store.clone(),
        )),
    );
    register_distance_functions(ctx);
    crate::query::functions::vector::register_vector_functions(ctx);
    crate::query::functions::limits::register_capped_functions(ctx);
    crate::query::functions::hex::register_hex_functions(ctx);
    crate::query::functions::bits::register_bit_functions(ctx);
}

/// SQL names of the types DataFusion's planner lacks: `FLOAT16` (alias
/// `HALF`), so that `FLOAT16[d]` declares a float16 vector column (Milvus's
/// FLOAT16_VECTOR) in DDL and casts; `VARBINARY(n)` and `BLOB` (binary);
/// `TIME(p)` and `TIMESTAMP(p)` of any precision (seconds for p = 0,
/// milliseconds up to 3, microseconds up to 6, nanoseconds beyond;
/// microseconds without one, as PostgreSQL and DuckDB, where DataFusion
/// takes nanoseconds and so cannot write the years 1 or 9999); and
/// `TIMESTAMP[(p)] WITH TIME ZONE` as an instant in UTC (DataFusion drops
/// the zone).
#[derive(Debug)]
pub(crate) struct VectorTypePlanner;

impl datafusion::logical_expr::planner::TypePlanner for VectorTypePlanner {
    fn plan_type_field(
        &self,
        sql_type: &datafusion::sql::sqlparser::ast::DataType,
    ) -> datafusion::error::Result<Option<FieldRef>> {
        use arrow::datatypes::TimeUnit;
        use datafusion::sql::sqlparser::ast::{DataType as Sql, TimezoneInfo};
        let field = |t: DataType| Ok(Some(Arc::new(Field::new("item", t, true))));
        let unit = |p: u64| match p {
            0 => TimeUnit::Second,
            1..=3 => TimeUnit::Millisecond,
            4..=6 => TimeUnit::Microsecond,
            _ => TimeUnit::Nanosecond,
        };
        match sql_type {
            Sql::Custom(name, modifiers) => {
                let name = name.to_string();
                if modifiers.is_empty()
                    && (name.eq_ignore_ascii_case("float16") || name.eq_ignore_ascii_case("half"))
                {
                    return field(DataType::Float16);
                }
                Ok(None)
            }
            Sql::Varbinary(_) | Sql::Blob(_) => field(DataType::Binary),
            // Without a precision, microseconds (as PostgreSQL and DuckDB),
            // so a TIMESTAMP literal reaches from year 1 to 9999.
            Sql::Time(p, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
                field(match unit(p.unwrap_or(6)) {
                    u @ (TimeUnit::Second | TimeUnit::Millisecond) => DataType::Time32(u),
                    u => DataType::Time64(u),
                })
            }
            Sql::Timestamp(p, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
                field(DataType::Timestamp(unit(p.unwrap_or(6)), None))
            }
            Sql::Timestamp(p, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => field(
                DataType::Timestamp(unit(p.unwrap_or(6)), Some("UTC".into())),
            ),
            _ => Ok(None),
        }
    }
}

/// The session configuration quiver runs queries with.
pub fn session_config() -> SessionConfig {
    let mut cfg = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, SCHEMA)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true);
    let opts = cfg.options_mut();
    opts.execution.parquet.pushdown_filters = true;
    opts.execution.parquet.reorder_filters = true;
    // Clients (the JDBC driver in particular) expect Utf8, not Utf8View.
    opts.execution.parquet.schema_force_view_types = false;
    opts.sql_parser.map_string_types_to_utf8view = false;
    cfg
}
