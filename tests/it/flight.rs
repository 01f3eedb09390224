//! The Flight SQL surface through arrow-flight's own client against an
//! in-process server on 127.0.0.1:0: statement updates, queries, result
//! message sizes, and the catalog commands.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, SqlInfo};
use arrow_flight::FlightInfo;
use futures::TryStreamExt;
use quiver::server::{self, ServerOptions};
use quiver::{Engine, Store, StoreConfig};
use tonic::transport::Channel;

pub(crate) struct Fixture {
    pub(crate) client: FlightSqlServiceClient<Channel>,
    pub(crate) channel: Channel,
    pub(crate) shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) handle: Option<tokio::task::JoinHandle<quiver::Result<()>>>,
    pub(crate) _dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) async fn start() -> Self {
        Self::start_with(ServerOptions::default()).await
    }

    pub(crate) async fn start_with(options: ServerOptions) -> Self {
        Self::start_full(options, quiver::EngineOptions::default()).await
    }

    pub(crate) async fn start_full(
        options: ServerOptions,
        engine_options: quiver::EngineOptions,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap(), StoreConfig::default())
            .await
            .unwrap();
        let engine = Engine::with_options(store, engine_options).unwrap();
        Self::start_engine(engine, options, dir).await
    }

    /// Serves `engine`, whose store lies in `dir`.
    pub(crate) async fn start_engine(
        engine: Engine,
        options: ServerOptions,
        dir: tempfile::TempDir,
    ) -> Self {
        let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(server::serve(engine, listener, options, async {
            let _ = rx.await;
        }));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            client: FlightSqlServiceClient::new(channel.clone()),
            channel,
            shutdown: Some(tx),
            handle: Some(handle),
            _dir: dir,
        }
    }

    pub(crate) async fn fetch(&mut self, info: FlightInfo) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        for ep in info.endpoint {
            let stream = self.client.do_get(ep.ticket.unwrap()).await.unwrap();
            out.extend(stream.try_collect::<Vec<_>>().await.unwrap());
        }
        out
    }

    pub(crate) async fn update(&mut self, sql: &str) -> i64 {
        self.client.execute_update(sql.into(), None).await.unwrap()
    }

    /// Collection `t`: ids 1..=`rows`, `v` = [id, 1].
    pub(crate) async fn table_t(&mut self, rows: usize) {
        self.update("CREATE TABLE t (id BIGINT NOT NULL, v FLOAT[2], PRIMARY KEY (id))")
            .await;
        self.insert_t(1, rows).await;
    }

    /// Rows `from..=to` of collection `t`.
    pub(crate) async fn insert_t(&mut self, from: usize, to: usize) {
        self.update(&format!(
            "INSERT INTO t SELECT value, [value * 1.0, 1.0] FROM generate_series({from}, {to})"
        ))
        .await;
    }

    pub(crate) async fn query(&mut self, sql: &str) -> Vec<RecordBatch> {
        let info = self.client.execute(sql.to_string(), None).await.unwrap();
        self.fetch(info).await
    }

    pub(crate) async fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.handle.take().unwrap().await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_updates_queries_and_catalog() {
    let mut f = Fixture::start().await;
    let c = &mut f.client;
    assert_eq!(
        c.execute_update(
            "CREATE TABLE t (id BIGINT NOT NULL, v FLOAT[2], PRIMARY KEY (id))".into(),
            None
        )
        .await
        .unwrap(),
        0
    );
    let n = c
        .execute_update(
            "INSERT INTO t SELECT value, [value * 1.0, 0.0] FROM generate_series(1, 200000)".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(n, 200_000);
    let err = c
        .execute_update("SELEKT".into(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.to_lowercase().contains("sql parser error") || err.contains("Expected"),
        "{err}"
    );

    // A large result arrives in several messages, each far below 16 MiB.
    let info = c.execute("SELECT id, v FROM t".into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut raw = c.do_get(ticket).await.unwrap().into_inner();
    let mut messages = 0;
    while let Some(data) = raw.try_next().await.unwrap() {
        assert!(
            data.inner.data_body.len() < 4 * 1024 * 1024,
            "message of {} bytes",
            data.inner.data_body.len()
        );
        messages += 1;
    }
    assert!(
        messages >= 2,
        "a 3 MB result should be split, got {messages} message(s)"
    );
    let rows = f.query("SELECT count(*) AS n, sum(id) AS s FROM t").await;
    assert_eq!(
        rows[0].column(0).as_primitive::<Int64Type>().value(0),
        200_000
    );
    assert_eq!(
        rows[0].column(1).as_primitive::<Int64Type>().value(0),
        200_000 * 200_001 / 2
    );

    // Catalog commands.
    let info = f.client.get_catalogs().await.unwrap();
    let cats = f.fetch(info).await;
    assert_eq!(cats[0].column(0).as_string::<i32>().value(0), "quiver");
    let info = f
        .client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let schemas = f.fetch(info).await;
    assert_eq!(schemas[0].column(1).as_string::<i32>().value(0), "public");
    let info = f
        .client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("t%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = f.fetch(info).await;
    assert_eq!(tables[0].num_rows(), 1);
    let ipc = tables[0].column(4).as_binary::<i32>().value(0);
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(ipc).unwrap();
    assert_eq!(
        schema.field(1).data_type(),
        &quiver::storage::vector_type(2)
    );
    let info = f
        .client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "t".into(),
        })
        .await
        .unwrap();
    let keys = f.fetch(info).await;
    assert_eq!(keys[0].column(3).as_string::<i32>().value(0), "id");
    let info = f.client.get_table_types().await.unwrap();
    assert_eq!(
        f.fetch(info).await[0].column(0).as_string::<i32>().value(0),
        "TABLE"
    );
    let info = f
        .client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName])
        .await
        .unwrap();
    assert_eq!(f.fetch(info).await[0].num_rows(), 1);

    // Prepared statement with a bound vector parameter.
    let mut prepared = f
        .client
        .prepare(
            "SELECT id FROM t ORDER BY l2_distance(v, $1) LIMIT 2".into(),
            None,
        )
        .await
        .unwrap();
    let param = RecordBatch::try_from_iter(vec![(
        "$1",
        Arc::new(arrow::array::ListArray::from_iter_primitive::<
            arrow::datatypes::Float64Type,
            _,
            _,
        >(vec![Some(vec![Some(7.0), Some(0.0)])])) as arrow::array::ArrayRef,
    )])
    .unwrap();
    prepared.set_parameters(param).unwrap();
    let info = prepared.execute().await.unwrap();
    let got = f.fetch(info).await;
    let ids: Vec<i64> = got
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids[0], 7);
    assert!(ids[1] == 6 || ids[1] == 8);
    prepared.close().await.unwrap();

    f.stop().await;
}

/// The type list, the foreign-key commands (empty: quiver has none) and the
/// column metadata of GetTables answer in the schemas the spec gives, and
/// every stream's schema equals the one its FlightInfo announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_commands_answer_in_the_spec_schemas() {
    use arrow_flight::sql::{
        CommandGetCrossReference, CommandGetExportedKeys, CommandGetImportedKeys,
        CommandGetXdbcTypeInfo,
    };
    let mut f = Fixture::start().await;
    f.client
        .execute_update(
            "CREATE TABLE t (id BIGINT NOT NULL, name VARCHAR, v FLOAT[3], PRIMARY KEY (id))"
                .into(),
            None,
        )
        .await
        .unwrap();
    let check = |info: &FlightInfo, batches: &[RecordBatch]| {
        let announced = info.clone().try_decode_schema().unwrap();
        for b in batches {
            assert_eq!(b.schema().as_ref(), &announced);
        }
    };

    let info = f
        .client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let all = f.fetch(info.clone()).await;
    check(&info, &all);
    let names: Vec<String> = all
        .iter()
        .flat_map(|b| {
            let c = b.column(0).as_string::<i32>();
            c.iter().flatten().map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    for t in [
        "BIGINT",
        "VARCHAR",
        "FLOAT",
        "DOUBLE",
        "BOOLEAN",
        "TIMESTAMP",
        "FLOAT[]",
    ] {
        assert!(names.iter().any(|n| n == t), "{t} missing from {names:?}");
    }
    // Filtered by the XDBC type code of BIGINT (-5).
    let info = f
        .client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo {
            data_type: Some(-5),
        })
        .await
        .unwrap();
    let bigint = f.fetch(info).await;
    assert_eq!(bigint.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    assert_eq!(bigint[0].column(0).as_string::<i32>().value(0), "BIGINT");

    let expected = quiver::flight::metadata::foreign_keys_schema();
    let infos = [
        f.client
            .get_imported_keys(CommandGetImportedKeys {
                catalog: None,
                db_schema: None,
                table: "t".into(),
            })
            .await
            .unwrap(),
        f.client
            .get_exported_keys(CommandGetExportedKeys {
                catalog: None,
                db_schema: None,
                table: "t".into(),
            })
            .await
            .unwrap(),
        f.client
            .get_cross_reference(CommandGetCrossReference {
                pk_catalog: None,
                pk_db_schema: None,
                pk_table: "t".into(),
                fk_catalog: None,
                fk_db_schema: None,
                fk_table: "t".into(),
            })
            .await
            .unwrap(),
    ];
    for info in infos {
        assert_eq!(
            &info.clone().try_decode_schema().unwrap(),
            expected.as_ref()
        );
        let batches = f.fetch(info.clone()).await;
        check(&info, &batches);
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    }

    let info = f
        .client
        .get_tables(CommandGetTables {
            catalog: Some("quiver".into()),
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: Some("t".into()),
            table_types: vec!["TABLE".into()],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = f.fetch(info.clone()).await;
    check(&info, &tables);
    let ipc = tables[0].column(4).as_binary::<i32>().value(0);
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(ipc).unwrap();
    let md = |i: usize, k: &str| {
        schema
            .field(i)
            .metadata()
            .get(k)
            .cloned()
            .unwrap_or_default()
    };
    use quiver::flight::metadata::{IS_CASE_SENSITIVE, PRECISION, REMARKS, TYPE_NAME};
    assert_eq!(md(0, TYPE_NAME), "BIGINT");
    assert_eq!(md(0, PRECISION), "19");
    assert_eq!(md(0, REMARKS), "primary key");
    assert_eq!(md(1, TYPE_NAME), "VARCHAR");
    assert_eq!(md(1, IS_CASE_SENSITIVE), "true");
    assert_eq!(md(2, TYPE_NAME), "FLOAT[3]");

    // Query streams carry exactly the schema their FlightInfo (and the
    // prepared statement's dataset schema) announced.
    f.client
        .execute_update(
            "INSERT INTO t VALUES (1, 'a', [1, 2, 3]), (2, NULL, [0, 0, 1])".into(),
            None,
        )
        .await
        .unwrap();
    let sql =
        "SELECT id, name, v, l2_distance(v, [1, 1, 1]) AS d, upper(name) AS u FROM t ORDER BY d";
    let info = f.client.execute(sql.into(), None).await.unwrap();
    let batches = f.fetch(info.clone()).await;
    check(&info, &batches);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    let mut prepared = f.client.prepare(sql.into(), None).await.unwrap();
    let announced = prepared.dataset_schema().unwrap().clone();
    let info = prepared.execute().await.unwrap();
    let batches = f.fetch(info.clone()).await;
    check(&info, &batches);
    assert_eq!(&info.try_decode_schema().unwrap(), announced.as_ref());
    prepared.close().await.unwrap();
    f.stop().await;
}

/// GetSqlInfo answers every id the spec defines (the JDBC driver reads them
/// all at its first metadata call) with the type the driver's
/// `ArrowDatabaseMetadata` casts it to (`desiredType.cast(..)`): a wrong
/// union branch fails there with a ClassCastException, a missing id with a
/// NullPointerException.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_info_has_every_id_with_its_declared_type() {
    use arrow::array::{Array, UnionArray};
    let mut f = Fixture::start().await;
    let info = f.client.get_sql_info(vec![]).await.unwrap();
    let batches = f.fetch(info).await;
    let mut got = std::collections::HashMap::new();
    for b in &batches {
        let ids = b.column(0).as_primitive::<arrow::datatypes::UInt32Type>();
        let values = b.column(1).as_any().downcast_ref::<UnionArray>().unwrap();
        for i in 0..b.num_rows() {
            got.insert(ids.value(i), (values.type_id(i), values.value(i)));
        }
    }
    // Union branches: 0 string, 1 bool, 2 int64, 3 int32 bitmask/enum,
    // 4 string list, 5 int32 -> int32 list map.
    let (s, b, i64_, i32_, list, map) = (0, 1, 2, 3, 4, 5);
    let mut expected: Vec<(u32, i8)> = vec![
        (0, s),
        (1, s),
        (2, s),
        (3, b),
        (4, b),
        (5, b),
        (8, i32_),
        (9, b),
        (10, b),
        (11, b),
        (100, i32_),
        (101, i32_),
        (500, b),
        (501, b),
        (502, b),
        (503, i64_),
        (504, s),
        (505, i64_),
        (506, b),
        (507, i64_),
        (508, list),
        (509, list),
        (510, list),
        (511, list),
        (512, list),
        (513, s),
        (514, s),
        (515, b),
        (516, b),
        (517, map),
        (518, b),
        (519, b),
        (520, b),
        (521, b),
        (522, i32_),
        (523, b),
        (524, b),
        (525, i32_),
        (526, i32_),
        (527, b),
        (528, i32_),
        (529, s),
        (530, s),
        (531, s),
        (532, b),
        (533, i32_),
        (534, i32_),
        (535, i32_),
        (536, b),
        (537, b),
        (538, i32_),
        (539, b),
        (540, i32_),
        (556, b),
        (562, i64_),
        (563, b),
        (564, i32_),
        (565, b),
        (566, b),
        (567, i32_),
        (568, i32_),
        (569, i32_),
        (570, i32_),
        (571, i32_),
        (572, b),
        (573, b),
        (574, b),
        (575, b),
        (576, b),
    ];
    expected.extend((541..=561).filter(|id| *id != 556).map(|id| (id, i64_)));
    for (id, branch) in expected {
        let (t, _) = got
            .get(&id)
            .unwrap_or_else(|| panic!("SqlInfo id {id} is missing"));
        assert_eq!(
            *t, branch,
            "SqlInfo id {id} has union branch {t}, expected {branch}"
        );
    }
    // Bitmasks the JDBC driver tests bit by bit: full and limited outer
    // joins (bits 2 and 1), isolation level NONE (bit 0).
    let int32 = |id: u32| {
        got[&id]
            .1
            .as_primitive::<arrow::datatypes::Int32Type>()
            .value(0)
    };
    assert_eq!(int32(528), 0b110);
    assert_eq!(int32(564), 0b1);
    // A few values a client shows or relies on.
    let string = |id: u32| {
        let v = &got[&id].1;
        v.as_string::<i32>().value(0).to_string()
    };
    assert_eq!(string(0), "quiver");
    assert_eq!(string(504), "\"");
    let list_of = |id: u32| -> Vec<String> {
        let v = got[&id].1.as_list::<i32>().value(0);
        v.as_string::<i32>()
            .iter()
            .flatten()
            .map(str::to_string)
            .collect()
    };
    assert!(list_of(508).iter().any(|k| k == "SELECT"));
    assert!(list_of(509).iter().any(|k| k == "sqrt"));
    assert!(list_of(509).iter().any(|k| k == "l2_distance"));
    assert!(list_of(510).iter().any(|k| k == "upper"));
    assert!(list_of(512).iter().any(|k| k == "date_trunc"));
    f.stop().await;
}

/// Statements that could read or write the server's files or change its
/// settings are refused, as plain statements, hidden in CTEs or subqueries,
/// and as prepared statements; a canary directory shows no file read (its
/// access time, older than its modification time, would move under
/// relatime) and none written. The server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_that_reach_files_or_settings_are_refused() {
    let mut f = Fixture::start().await;
    f.client
        .execute_update(
            "CREATE TABLE t (id BIGINT NOT NULL, PRIMARY KEY (id))".into(),
            None,
        )
        .await
        .unwrap();
    f.client
        .execute_update("INSERT INTO t VALUES (1)".into(), None)
        .await
        .unwrap();
    let canary_dir = tempfile::tempdir().unwrap();
    let d = canary_dir.path().display().to_string();
    let canary = canary_dir.path().join("canary.csv");
    std::fs::write(&canary, "a,b\n1,2\n").unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
    std::fs::File::options()
        .write(true)
        .open(&canary)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_accessed(old))
        .unwrap();
    let atime = || std::fs::metadata(&canary).unwrap().accessed().unwrap();
    let before = atime();
    assert_eq!(before, old);

    let statements = [
        format!("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '{d}/canary.csv'"),
        format!("CREATE EXTERNAL TABLE IF NOT EXISTS x (a INT, b INT) STORED AS CSV LOCATION '{d}/canary.csv' OPTIONS ('format.has_header' 'true')"),
        format!("CREATE UNBOUNDED EXTERNAL TABLE x STORED AS CSV LOCATION '{d}/canary.csv'"),
        format!("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{d}/'"),
        format!("COPY (SELECT 1) TO '{d}/out.csv'"),
        format!("COPY (SELECT 1 AS a) TO '{d}/out.parquet' STORED AS PARQUET"),
        format!("COPY t TO '{d}/t.csv'"),
        format!("COPY (WITH c AS (SELECT id FROM t) SELECT * FROM c) TO '{d}/c.csv'"),
        format!("EXPLAIN ANALYZE COPY (SELECT 1) TO '{d}/e.csv'"),
        format!("SELECT * FROM '{d}/canary.csv'"),
        format!("WITH c AS (SELECT * FROM '{d}/canary.csv') SELECT * FROM c"),
        format!("SELECT 1 WHERE EXISTS (SELECT 1 FROM '{d}/canary.csv')"),
        format!("SELECT * FROM t JOIN '{d}/canary.csv' c ON true"),
        format!("CREATE TABLE y AS SELECT * FROM '{d}/canary.csv'"),
        format!("INSERT INTO t SELECT 2 FROM '{d}/canary.csv'"),
        format!("CREATE VIEW v AS SELECT * FROM '{d}/canary.csv'"),
        format!("DESCRIBE '{d}/canary.csv'"),
        "SET datafusion.execution.batch_size = 1".to_string(),
        "SET datafusion.catalog.information_schema = false".to_string(),
        "SET datafusion.runtime.memory_limit = '1G'".to_string(),
        format!("SET datafusion.runtime.temp_directory = '{d}'"),
        "SET TIME ZONE 'Europe/Paris'".to_string(),
        "RESET datafusion.execution.batch_size".to_string(),
        "CREATE SCHEMA s".to_string(),
        "CREATE DATABASE other".to_string(),
        "DROP SCHEMA public".to_string(),
        "CREATE FUNCTION f(INT) RETURNS INT RETURN $1 + 1".to_string(),
        format!("PREPARE p AS COPY (SELECT 1) TO '{d}/p.csv'"),
    ];
    assert!(statements.len() >= 20);
    for sql in &statements {
        let as_query = match f.client.execute(sql.clone(), None).await {
            Ok(info) => {
                let ticket = info.endpoint[0].ticket.clone().unwrap();
                match f.client.do_get(ticket).await {
                    Ok(s) => s.try_collect::<Vec<_>>().await.err().map(|e| e.to_string()),
                    Err(e) => Some(e.to_string()),
                }
            }
            Err(e) => Some(e.to_string()),
        };
        assert!(as_query.is_some(), "accepted as a statement: {sql}");
        let as_update = f.client.execute_update(sql.clone(), None).await;
        assert!(as_update.is_err(), "accepted as an update: {sql}");
        // The JDBC driver prepares every statement.
        let prepared = match f.client.prepare(sql.clone(), None).await {
            Err(_) => true,
            Ok(mut p) => {
                let refused = if p.dataset_schema().unwrap().fields().is_empty() {
                    p.execute_update().await.is_err()
                } else {
                    match p.execute().await {
                        Err(_) => true,
                        Ok(info) => {
                            let ticket = info.endpoint[0].ticket.clone().unwrap();
                            match f.client.do_get(ticket).await {
                                Ok(s) => s.try_collect::<Vec<_>>().await.is_err(),
                                Err(_) => true,
                            }
                        }
                    }
                };
                let _ = p.close().await;
                refused
            }
        };
        assert!(prepared, "accepted as a prepared statement: {sql}");
    }
    let files: Vec<_> = std::fs::read_dir(canary_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, vec!["canary.csv".to_string()], "files were written");
    assert_eq!(atime(), before, "the canary file was read");
    // Settings did not change and the server still answers.
    let rows = f
        .query("SELECT value FROM information_schema.df_settings WHERE name = 'datafusion.execution.batch_size'")
        .await;
    assert_eq!(rows[0].column(0).as_string::<i32>().value(0), "8192");
    let rows = f.query("SELECT count(*) FROM t").await;
    assert_eq!(rows[0].column(0).as_primitive::<Int64Type>().value(0), 1);
    f.stop().await;
}

/// The Arrow Flight SQL JDBC driver's call sequence, replayed with
/// arrow-flight's client (the driver's jar is not in a registry this
/// machine reaches). Each step names the driver behaviour it reproduces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_driver_call_sequence() {
    let mut f = Fixture::start().await;
    // 1. Connection: DatabaseMetaData reads GetSqlInfo for all ids at once
    //    and casts each value to its declared type
    //    (`sql_info_has_every_id_with_its_declared_type` checks the types).
    let info = f.client.get_sql_info(vec![]).await.unwrap();
    assert!(
        f.fetch(info)
            .await
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>()
            > 80
    );

    // 2. Statement.executeUpdate / execute of DDL: the driver prepares every
    //    statement; an empty dataset_schema tells it this is an update, which
    //    it runs with DoPut(CommandPreparedStatementUpdate) and reads the
    //    row count from the DoPut result; then ClosePreparedStatement.
    let mut ddl = f
        .client
        .prepare(
            "CREATE TABLE items (id BIGINT NOT NULL, name VARCHAR, v FLOAT[2], PRIMARY KEY (id))"
                .into(),
            None,
        )
        .await
        .unwrap();
    assert!(ddl.dataset_schema().unwrap().fields().is_empty());
    assert_eq!(ddl.execute_update().await.unwrap(), 0);
    ddl.close().await.unwrap();
    let mut insert = f
        .client
        .prepare(
            "INSERT INTO items VALUES (1, 'a', [0, 1]), (2, 'b', [1, 0]), (3, 'c', [1, 1])".into(),
            None,
        )
        .await
        .unwrap();
    assert!(insert.dataset_schema().unwrap().fields().is_empty());
    assert_eq!(insert.execute_update().await.unwrap(), 3);
    insert.close().await.unwrap();

    // 3. PreparedStatement with `?` parameters: the parameter schema comes
    //    with the prepare result; the driver binds a row by
    //    DoPut(CommandPreparedStatementQuery), then GetFlightInfo(prepared
    //    query) and DoGet on every endpoint (locations empty: same server).
    let mut query = f
        .client
        .prepare(
            "SELECT id, name FROM items WHERE id >= ? ORDER BY l2_distance(v, ?) LIMIT 2".into(),
            None,
        )
        .await
        .unwrap();
    let schema = query.dataset_schema().unwrap().clone();
    assert_eq!(
        schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["id", "name"]
    );
    assert_eq!(query.parameter_schema().unwrap().fields().len(), 2);
    let params = RecordBatch::try_from_iter(vec![
        (
            "$1",
            Arc::new(arrow::array::Int64Array::from(vec![2])) as arrow::array::ArrayRef,
        ),
        (
            "$2",
            Arc::new(arrow::array::ListArray::from_iter_primitive::<
                arrow::datatypes::Float64Type,
                _,
                _,
            >(vec![Some(vec![Some(0.9), Some(0.1)])])),
        ),
    ])
    .unwrap();
    query.set_parameters(params).unwrap();
    let info = query.execute().await.unwrap();
    assert!(info.endpoint.iter().all(|e| e.location.is_empty()));
    let rows = f.fetch(info).await;
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids, vec![2, 3]);
    query.close().await.unwrap();

    // 4. DatabaseMetaData.getColumns: GetTables with include_schema, reading
    //    the ARROW:FLIGHT:SQL:* field metadata; getPrimaryKeys.
    let info = f
        .client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("ite%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = f.fetch(info).await;
    let ipc = tables[0].column(4).as_binary::<i32>().value(0);
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(ipc).unwrap();
    let type_names: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.metadata()[quiver::flight::metadata::TYPE_NAME].as_str())
        .collect();
    assert_eq!(type_names, ["BIGINT", "VARCHAR", "FLOAT[2]"]);
    let info = f
        .client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "items".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        f.fetch(info).await[0].column(3).as_string::<i32>().value(0),
        "id"
    );
    f.stop().await;
}

/// DoGet takes the query its FlightInfo started (planned once); a ticket
/// redeemed again, whose query was taken, is planned again from its SQL and
/// gives the same rows, for statements and prepared statements alike: the
/// started query and the fresh run agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_redeemed_twice_gives_the_same_rows() {
    let mut f = Fixture::start().await;
    f.table_t(500).await;
    let sql = "SELECT id FROM t WHERE id % 7 = 0 ORDER BY l2_distance(v, [40, 1]) LIMIT 5";
    let info = f.client.execute(sql.into(), None).await.unwrap();
    let first = f.fetch(info.clone()).await;
    let again = f.fetch(info).await;
    let ids = |b: &[RecordBatch]| -> Vec<i64> {
        b.iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    };
    assert_eq!(ids(&first), vec![42, 35, 49, 28, 56]);
    assert_eq!(ids(&again), ids(&first));
    let mut prepared = f.client.prepare(sql.into(), None).await.unwrap();
    let info = prepared.execute().await.unwrap();
    let a = f.fetch(info.clone()).await;
    let b = f.fetch(info).await;
    assert_eq!(ids(&a), ids(&first));
    assert_eq!(ids(&b), ids(&first));
    f.stop().await;
}

/// The one Int64 value of a query's result.
pub(crate) fn single_count(batches: &[RecordBatch]) -> i64 {
    let rows: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(rows.len(), 1, "{batches:?}");
    rows[0]
}

/// A query starts when its FlightInfo is made and reads the data as it is
/// then: rows written between GetFlightInfo and DoGet are not in its
/// result (were it planned at DoGet, they would be). Its ticket redeemed
/// again plans the query afresh and sees them; the same for a prepared
/// statement's FlightInfo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_reads_the_data_of_its_flight_info() {
    let mut f = Fixture::start().await;
    f.table_t(10).await;
    let sql = "SELECT count(*) AS n FROM t";
    let info = f.client.execute(sql.into(), None).await.unwrap();
    f.update("INSERT INTO t VALUES (11, [11, 1])").await;
    assert_eq!(single_count(&f.fetch(info.clone()).await), 10);
    assert_eq!(single_count(&f.fetch(info).await), 11);

    let mut prepared = f.client.prepare(sql.into(), None).await.unwrap();
    let info = prepared.execute().await.unwrap();
    f.update("INSERT INTO t VALUES (12, [12, 1])").await;
    assert_eq!(single_count(&f.fetch(info.clone()).await), 11);
    assert_eq!(single_count(&f.fetch(info).await), 12);
    f.stop().await;
}

/// A prepared statement run again reads, and writes, the data as it is at
/// that run, not as it was when prepared: queries see rows written since,
/// a prepared DELETE deletes the rows that match then. Time travel keeps
/// its version; a collection recreated with other columns asks for a new
/// prepare, with its name in the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_see_the_data_of_each_run() {
    let mut f = Fixture::start().await;
    f.table_t(10).await;
    let mut count = f
        .client
        .prepare("SELECT count(*) AS n FROM t".into(), None)
        .await
        .unwrap();
    let mut then = f
        .client
        .prepare(
            "SELECT count(*) AS n FROM quiver_snapshot('t', 2)".into(),
            None,
        )
        .await
        .unwrap();
    let mut nearest = f
        .client
        .prepare(
            "SELECT id FROM t ORDER BY l2_distance(v, [100, 1]) LIMIT 1".into(),
            None,
        )
        .await
        .unwrap();
    let info = count.execute().await.unwrap();
    assert_eq!(single_count(&f.fetch(info).await), 10);
    f.insert_t(11, 20).await;
    let info = count.execute().await.unwrap();
    assert_eq!(single_count(&f.fetch(info).await), 20);
    let info = nearest.execute().await.unwrap();
    assert_eq!(single_count(&f.fetch(info).await), 20);
    let info = then.execute().await.unwrap();
    assert_eq!(single_count(&f.fetch(info).await), 10);

    let mut delete = f
        .client
        .prepare("DELETE FROM t WHERE id > 15".into(), None)
        .await
        .unwrap();
    assert_eq!(delete.execute_update().await.unwrap(), 5);
    f.insert_t(21, 23).await;
    assert_eq!(delete.execute_update().await.unwrap(), 3);
    let info = count.execute().await.unwrap();
    assert_eq!(single_count(&f.fetch(info).await), 15);
    let info = then.execute().await.unwrap();
    assert_eq!(single_count(&f.fetch(info).await), 10);

    f.update("DROP TABLE t").await;
    f.update("CREATE TABLE t (id BIGINT NOT NULL, w FLOAT[3], PRIMARY KEY (id))")
        .await;
    let e = count.execute().await.unwrap_err().to_string();
    assert!(
        e.contains("collection 't' was recreated with other columns"),
        "{e}"
    );
    // Prepared again, it runs.
    let mut count = f
        .client
        .prepare("SELECT count(*) AS n FROM t".into(), None)
        .await
        .unwrap();
    let info = count.execute().await.unwrap();
    assert_eq!(single_count(&f.fetch(info).await), 0);
    f.stop().await;
}
