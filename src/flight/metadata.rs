//! What quiver tells Flight SQL clients about itself: GetSqlInfo, the type list
//! (GetXdbcTypeInfo), SQL type names and column metadata of table schemas
//! (GetTables with `include_schema`), and the schema of the foreign-key
//! commands (quiver has no foreign keys, so their answers are empty).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{Nullable, Searchable, SqlInfo, XdbcDataType, XdbcDatetimeSubcode};
use datafusion::execution::SessionState;

/// Field metadata keys of the Flight SQL column metadata.
pub const TYPE_NAME: &str = "ARROW:FLIGHT:SQL:TYPE_NAME";
pub const PRECISION: &str = "ARROW:FLIGHT:SQL:PRECISION";
pub const SCALE: &str = "ARROW:FLIGHT:SQL:SCALE";
pub const IS_AUTO_INCREMENT: &str = "ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT";
pub const IS_CASE_SENSITIVE: &str = "ARROW:FLIGHT:SQL:IS_CASE_SENSITIVE";
pub const IS_READ_ONLY: &str = "ARROW:FLIGHT:SQL:IS_READ_ONLY";
pub const IS_SEARCHABLE: &str = "ARROW:FLIGHT:SQL:IS_SEARCHABLE";
pub const REMARKS: &str = "ARROW:FLIGHT:SQL:REMARKS";

/// The SQL name of an Arrow type, as written in quiver's DDL.
pub fn sql_type_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INTEGER UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float16 => "FLOAT16".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTEA".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::FixedSizeList(f, n) => format!("{}[{n}]", sql_type_name(f.data_type())),
        DataType::List(f) | DataType::LargeList(f) => format!("{}[]", sql_type_name(f.data_type())),
        other => other.to_string(),
    }
}

/// Decimal digits of precision and the scale of numeric types.
fn precision_scale(t: &DataType) -> Option<(u8, i8)> {
    Some(match t {
        DataType::Int8 | DataType::UInt8 => (3, 0),
        DataType::Int16 | DataType::UInt16 => (5, 0),
        DataType::Int32 | DataType::UInt32 => (10, 0),
        DataType::Int64 => (19, 0),
        DataType::UInt64 => (20, 0),
        DataType::Float16 => (3, 0),
        DataType::Float32 => (7, 0),
        DataType::Float64 => (15, 0),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => (*p, *s),
        _ => return None,
    })
}

/// A collection's schema as GetTables reports it: every field carries the
/// Flight SQL column metadata (type name, precision and scale, flags, and a
/// remark for the primary key and vector columns).
pub fn table_schema_with_metadata(schema: &Schema, primary_key: Option<&str>) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let t = f.data_type();
            let mut md: HashMap<String, String> = f.metadata().clone();
            md.insert(TYPE_NAME.into(), sql_type_name(t));
            if let Some((p, s)) = precision_scale(t) {
                md.insert(PRECISION.into(), p.to_string());
                md.insert(SCALE.into(), s.to_string());
            }
            md.insert(IS_AUTO_INCREMENT.into(), "false".into());
            md.insert(
                IS_CASE_SENSITIVE.into(),
                matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View).to_string(),
            );
            md.insert(IS_READ_ONLY.into(), "false".into());
            md.insert(IS_SEARCHABLE.into(), "true".into());
            let remark = if Some(f.name().as_str()) == primary_key {
                Some("primary key".to_string())
            } else if let DataType::FixedSizeList(item, n) = t {
                Some(format!(
                    "vector of {n} {}",
                    sql_type_name(item.data_type()).to_lowercase()
                ))
            } else {
                None
            };
            if let Some(r) = remark {
                md.insert(REMARKS.into(), r);
            }
            f.as_ref().clone().with_metadata(md)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The schema of GetImportedKeys, GetExportedKeys and GetCrossReference
/// results (Flight SQL spec).
pub fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// One row of the type list.
struct TypeRow {
    name: &'static str,
    xdbc: XdbcDataType,
    size: Option<i32>,
    quote: bool,
    params: Option<&'static [&'static str]>,
    case_sensitive: bool,
    searchable: Searchable,
    unsigned: Option<bool>,
    scale: Option<(i32, i32)>,
    subcode: Option<XdbcDatetimeSubcode>,
    radix: Option<i32>,
}

impl TypeRow {
    const fn new(name: &'static str, xdbc: XdbcDataType) -> Self {
        Self {
            name,
            xdbc,
            size: None,
            quote: false,
            params: None,
            case_sensitive: false,
            searchable: Searchable::Basic,
            unsigned: None,
            scale: None,
            subcode: None,
            radix: None,
        }
    }

    fn number(mut self, digits: i32, unsigned: bool) -> Self {
        self.size = Some(digits);
        self.unsigned = Some(unsigned);
        self.radix = Some(10);
        self.scale = Some((0, 0));
        self
    }
}

/// The types a client can use in quiver's DDL and casts.
pub fn xdbc_type_info() -> XdbcTypeInfoData {
    use XdbcDataType as X;
    let rows = [
        TypeRow::new("BOOLEAN", X::XdbcBit),
        TypeRow::new("TINYINT", X::XdbcTinyint).number(3, false),
        TypeRow::new("SMALLINT", X::XdbcSmallint).number(5, false),
        TypeRow::new("INTEGER", X::XdbcInteger).number(10, false),
        TypeRow::new("BIGINT", X::XdbcBigint).number(19, false),
        TypeRow::new("FLOAT", X::XdbcFloat).number(7, false),
        TypeRow::new("DOUBLE", X::XdbcDouble).number(15, false),
        TypeRow {
            quote: true,
            case_sensitive: true,
            searchable: Searchable::Full,
            ..TypeRow::new("VARCHAR", X::XdbcVarchar)
        },
        TypeRow {
            quote: true,
            ..TypeRow::new("BYTEA", X::XdbcVarbinary)
        },
        TypeRow {
            quote: true,
            // XDBC_SUBCODE_DATE shares the value 1 with YEAR in the proto.
            subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
            ..TypeRow::new("DATE", X::XdbcDate)
        },
        TypeRow {
            quote: true,
            subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
            ..TypeRow::new("TIMESTAMP", X::XdbcTimestamp)
        },
        // Vectors: an element type with a dimension, e.g. FLOAT[768].
        TypeRow {
            params: Some(&["dimension"]),
            searchable: Searchable::None,
            ..TypeRow::new("FLOAT[]", X::XdbcUnknownType)
        },
        TypeRow {
            params: Some(&["dimension"]),
            searchable: Searchable::None,
            ..TypeRow::new("FLOAT16[]", X::XdbcUnknownType)
        },
        TypeRow {
            params: Some(&["dimension"]),
            searchable: Searchable::None,
            ..TypeRow::new("TINYINT[]", X::XdbcUnknownType)
        },
    ];
    let mut b = XdbcTypeInfoDataBuilder::new();
    for r in rows {
        b.append(XdbcTypeInfo {
            type_name: r.name.into(),
            data_type: r.xdbc,
            column_size: r.size,
            literal_prefix: r.quote.then(|| "'".into()),
            literal_suffix: r.quote.then(|| "'".into()),
            create_params: r.params.map(|p| p.iter().map(|s| s.to_string()).collect()),
            nullable: Nullable::NullabilityNullable,
            case_sensitive: r.case_sensitive,
            searchable: r.searchable,
            unsigned_attribute: r.unsigned,
            fixed_prec_scale: false,
            auto_increment: Some(false),
            local_type_name: Some(r.name.into()),
            minimum_scale: r.scale.map(|s| s.0),
            maximum_scale: r.scale.map(|s| s.1),
            sql_data_type: r.xdbc,
            datetime_subcode: r.subcode,
            num_prec_radix: r.radix,
            interval_precision: None,
        });
    }
    b.build().expect("static type list is valid")
}

/// Function names by the section DataFusion documents them in: numeric,
/// string, date/time and system (everything else) functions, sorted.
/// quiver's vector distances count as numeric functions.
fn function_lists(state: &SessionState) -> [Vec<String>; 4] {
    let mut lists: [Vec<String>; 4] = Default::default();
    for (name, udf) in state.scalar_functions() {
        let section = udf.documentation().map(|d| d.doc_section.label);
        let i = match section {
            Some("Math Functions") => 0,
            Some(
                "String Functions" | "Binary String Functions" | "Regular Expression Functions",
            ) => 1,
            Some("Time and Date Functions") => 2,
            None if name.contains("distance") || name.contains("product") => 0,
            _ => 3,
        };
        lists[i].push(name.clone());
    }
    for l in &mut lists {
        l.sort();
        l.dedup();
    }
    lists
}

/// Which SQL types convert to which (CAST), from Arrow's cast rules.
fn supports_convert() -> HashMap<i32, Vec<i32>> {
    use arrow::datatypes::{IntervalUnit, TimeUnit};
    use arrow_flight::sql::SqlSupportsConvert as C;
    let types = [
        (C::SqlConvertBigint, DataType::Int64),
        (C::SqlConvertBinary, DataType::Binary),
        (C::SqlConvertBit, DataType::Boolean),
        (C::SqlConvertChar, DataType::Utf8),
        (C::SqlConvertDate, DataType::Date32),
        (C::SqlConvertDecimal, DataType::Decimal128(38, 10)),
        (C::SqlConvertFloat, DataType::Float32),
        (C::SqlConvertInteger, DataType::Int32),
        (
            C::SqlConvertIntervalDayTime,
            DataType::Interval(IntervalUnit::DayTime),
        ),
        (
            C::SqlConvertIntervalYearMonth,
            DataType::Interval(IntervalUnit::YearMonth),
        ),
        (C::SqlConvertLongvarbinary, DataType::LargeBinary),
        (C::SqlConvertLongvarchar, DataType::LargeUtf8),
        (C::SqlConvertNumeric, DataType::Decimal128(38, 10)),
        (C::SqlConvertReal, DataType::Float64),
        (C::SqlConvertSmallint, DataType::Int16),
        (C::SqlConvertTime, DataType::Time64(TimeUnit::Nanosecond)),
        (
            C::SqlConvertTimestamp,
            DataType::Timestamp(TimeUnit::Nanosecond, None),
        ),
        (C::SqlConvertTinyint, DataType::Int8),
        (C::SqlConvertVarbinary, DataType::Binary),
        (C::SqlConvertVarchar, DataType::Utf8),
    ];
    let mut map = HashMap::new();
    for (from, ft) in &types {
        let to: Vec<i32> = types
            .iter()
            .filter(|(_, tt)| arrow::compute::can_cast_types(ft, tt))
            .map(|(t, _)| *t as i32)
            .collect();
        map.insert(*from as i32, to);
    }
    map
}

/// GetSqlInfo: every id the Flight SQL JDBC driver and ADBC read, with the
/// value type the JDBC driver casts it to (`ArrowDatabaseMetadata`: String,
/// Boolean, Long, Integer bitmasks, List, Map); enum-valued ids it tests
/// bit by bit are bitmasks.
pub fn sql_info(state: &SessionState) -> SqlInfoData {
    use arrow_flight::sql::{
        SqlNullOrdering, SqlOuterJoinsSupportLevel, SqlSupportedCaseSensitivity,
        SqlSupportedGroupBy, SqlSupportedResultSetType, SqlSupportedSubqueries,
        SqlSupportedTransaction, SqlSupportedUnions, SqlTransactionIsolationLevel,
        SupportedSqlGrammar,
    };
    let bits = |xs: &[i32]| xs.iter().fold(0i32, |acc, x| acc | (1 << x));
    let [numeric, string, datetime, system] = function_lists(state);
    let keywords: Vec<String> = datafusion::sql::sqlparser::keywords::ALL_KEYWORDS
        .iter()
        .map(|k| k.to_string())
        .collect();
    let mut b = SqlInfoDataBuilder::new();
    // Server.
    b.append(SqlInfo::FlightSqlServerName, "quiver");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    // DDL and identifiers. The case and null-ordering enums go as int64:
    // the Java SqlInfoBuilder writes them so and the ODBC driver reads them
    // so (the proto comment says int32; JDBC does not read them).
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i64,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i64,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i64,
    );
    b.append(SqlInfo::SqlKeywords, keywords);
    b.append(SqlInfo::SqlNumericFunctions, numeric);
    b.append(SqlInfo::SqlStringFunctions, string);
    b.append(SqlInfo::SqlSystemFunctions, system);
    b.append(SqlInfo::SqlDatetimeFunctions, datetime);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    // What the SQL dialect supports.
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsConvert, supports_convert());
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(
        SqlInfo::SqlSupportedGroupBy,
        bits(&[
            SqlSupportedGroupBy::SqlGroupByUnrelated as i32,
            SqlSupportedGroupBy::SqlGroupByBeyondSelect as i32,
        ]),
    );
    // DataFusion accepts only `ESCAPE '\'`, not any escape character.
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, false);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        bits(&[
            SupportedSqlGrammar::SqlMinimumGrammar as i32,
            SupportedSqlGrammar::SqlCoreGrammar as i32,
        ]),
    );
    b.append(
        SqlInfo::SqlAnsi92SupportedLevel,
        // SupportedAnsi92SqlGrammarLevel: ANSI92_ENTRY_SQL (0) and
        // ANSI92_INTERMEDIATE_SQL (1); arrow-flight does not export the enum.
        bits(&[0, 1]),
    );
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    // A bitmask for the JDBC driver (supportsFullOuterJoins tests bit 2,
    // supportsLimitedOuterJoins bit 1).
    b.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        bits(&[
            SqlOuterJoinsSupportLevel::SqlLimitedOuterJoins as i32,
            SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
        ]),
    );
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    // Schema and catalog names are not used in procedure calls, index or
    // privilege definitions (quiver has none of those).
    b.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(
        SqlInfo::SqlSupportedSubqueries,
        bits(&[
            SqlSupportedSubqueries::SqlSubqueriesInComparisons as i32,
            SqlSupportedSubqueries::SqlSubqueriesInExists as i32,
            SqlSupportedSubqueries::SqlSubqueriesInIns as i32,
        ]),
    );
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(
        SqlInfo::SqlSupportedUnions,
        bits(&[
            SqlSupportedUnions::SqlUnion as i32,
            SqlSupportedUnions::SqlUnionAll as i32,
        ]),
    );
    // Limits: 0 means none known.
    for id in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        b.append(id, 0i64);
    }
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, true);
    // Transactions: none; each statement commits on its own.
    // int64, not int32: the JDBC driver reads this one as a Long.
    b.append(
        SqlInfo::SqlDefaultTransactionIsolation,
        SqlTransactionIsolationLevel::SqlTransactionNone as i64,
    );
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(
        SqlInfo::SqlSupportedTransactionsIsolationLevels,
        bits(&[SqlTransactionIsolationLevel::SqlTransactionNone as i32]),
    );
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    b.append(
        SqlInfo::SqlSupportedResultSetTypes,
        bits(&[SqlSupportedResultSetType::SqlResultSetTypeForwardOnly as i32]),
    );
    // Read-only result sets (ResultSet.CONCUR_READ_ONLY), forward only.
    let read_only = bits(&[
        arrow_flight::sql::SqlSupportedResultSetConcurrency::SqlResultSetConcurrencyReadOnly as i32,
    ]);
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        0i32,
    );
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        read_only,
    );
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        0i32,
    );
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
        0i32,
    );
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.build().expect("the SqlInfo table is valid")
}

pub(crate) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::TimeUnit;

    #[test]
    fn type_names_read_like_the_ddl() {
        let v = crate::storage::format::schema::vector_type(4);
        assert_eq!(sql_type_name(&v), "FLOAT[4]");
        assert_eq!(sql_type_name(&DataType::Decimal128(10, 2)), "DECIMAL(10,2)");
        assert_eq!(
            sql_type_name(&DataType::Timestamp(TimeUnit::Microsecond, None)),
            "TIMESTAMP"
        );
        let s = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", v, true),
            Field::new("t", DataType::Utf8, true),
        ]);
        let with = table_schema_with_metadata(&s, Some("id"));
        let md = |i: usize, k: &str| with.field(i).metadata().get(k).cloned();
        assert_eq!(md(0, TYPE_NAME).as_deref(), Some("BIGINT"));
        assert_eq!(md(0, PRECISION).as_deref(), Some("19"));
        assert_eq!(md(0, REMARKS).as_deref(), Some("primary key"));
        assert_eq!(md(1, REMARKS).as_deref(), Some("vector of 4 float"));
        assert_eq!(md(2, IS_CASE_SENSITIVE).as_deref(), Some("true"));
        assert!(!with.field(0).is_nullable());
    }
}
