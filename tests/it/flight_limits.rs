//! Flight SQL queries under limits: cancelled and dropped queries stop
//! working, deadlines end queries, query memory is bounded, and queries run
//! on the query runtime.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use futures::TryStreamExt;
use prost::Message;
use quiver::server::ServerOptions;
use quiver::{Engine, Store, StoreConfig};
use std::sync::Arc;

use crate::flight::{single_count, Fixture};

/// A query that would run for minutes: a count over 10^11 generated rows.
const ENDLESS: &str = "SELECT count(*) AS n FROM generate_series(1, 100000000000)";

/// Waits (at most 10 s) until the runtime runs no more tasks than
/// `baseline`, i.e. the query's work has stopped; returns how long it took.
async fn settle(baseline: usize) -> std::time::Duration {
    let t = std::time::Instant::now();
    let metrics = tokio::runtime::Handle::current().metrics();
    while metrics.num_alive_tasks() > baseline {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "{} tasks still running, {baseline} before the query",
            metrics.num_alive_tasks()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    t.elapsed()
}

/// CancelFlightInfo stops a running query (its stream ends with
/// `Cancelled`, its tasks end) and refuses the ticket afterwards; a client
/// that drops its stream stops the query too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_dropped_queries_stop_working() {
    let mut f = Fixture::start().await;
    f.query("SELECT 1").await;
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();

    let info = f.client.execute(ENDLESS.into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut reader = f.client.clone();
    let running = tokio::spawn(async move {
        let stream = reader.do_get(ticket).await?;
        stream.try_collect::<Vec<_>>().await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!running.is_finished());
    let mut flight = arrow_flight::FlightClient::new(f.channel.clone());
    let result = flight
        .cancel_flight_info(arrow_flight::CancelFlightInfoRequest::new(info.clone()))
        .await
        .unwrap();
    assert_eq!(result.status, arrow_flight::CancelStatus::Cancelled as i32);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), running)
        .await
        .expect("the cancelled query kept running")
        .unwrap();
    let e = ended.unwrap_err().to_string();
    assert!(e.contains("cancelled"), "{e}");
    let took = settle(baseline).await;
    eprintln!("cancelled query's tasks ended {took:?} after its stream");
    // The ticket of a cancelled run is refused; an unknown FlightInfo is NOT_FOUND.
    let e = f
        .client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cancelled"), "{e}");
    let other = f.client.execute("SELECT 2".into(), None).await.unwrap();
    let mut forged = other.clone();
    forged.endpoint[0].ticket = Some(arrow_flight::Ticket::new(
        arrow_flight::sql::ProstMessageExt::as_any(&arrow_flight::sql::TicketStatementQuery {
            statement_handle: "q:nosuchrun:SELECT 2".into(),
        })
        .encode_to_vec(),
    ));
    let e = flight
        .cancel_flight_info(arrow_flight::CancelFlightInfoRequest::new(forged))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no running or pending query"), "{e}");
    // Other runs of the same SQL are not affected.
    assert_eq!(f.fetch(other).await[0].num_rows(), 1);

    // A client that drops the stream: the server's work stops as well.
    let info = f.client.execute(ENDLESS.into(), None).await.unwrap();
    let stream = f
        .client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            > baseline
    );
    drop(stream);
    let took = settle(baseline).await;
    eprintln!("dropped query's tasks ended {took:?} after the client dropped its stream");
    f.query("SELECT 1").await;
    f.stop().await;
}

/// The server's query timeout and the client's grpc-timeout both stop a
/// query with DEADLINE_EXCEEDED and a message saying which; the server
/// keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_stop_at_their_deadline() {
    let mut f = Fixture::start_with(ServerOptions {
        limits: quiver::flight::FlightLimits {
            query_timeout: std::time::Duration::from_millis(400),
            ..Default::default()
        },
        ..ServerOptions::default()
    })
    .await;
    let info = f.client.execute(ENDLESS.into(), None).await.unwrap();
    let stream = f
        .client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    let e = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.try_collect::<Vec<_>>(),
    )
    .await
    .expect("the query ran past its timeout")
    .unwrap_err()
    .to_string();
    assert!(e.contains("--query-timeout 400ms"), "{e}");
    assert!(
        e.contains("Deadline expired") || e.contains("DeadlineExceeded"),
        "{e}"
    );
    f.query("SELECT 1").await;
    f.stop().await;

    // No server limit; the client's grpc-timeout.
    let mut f = Fixture::start_with(ServerOptions {
        limits: quiver::flight::FlightLimits {
            query_timeout: std::time::Duration::ZERO,
            ..Default::default()
        },
        ..ServerOptions::default()
    })
    .await;
    let info = f.client.execute(ENDLESS.into(), None).await.unwrap();
    let mut req = tonic::Request::new(info.endpoint[0].ticket.clone().unwrap());
    req.set_timeout(std::time::Duration::from_millis(400));
    let mut raw = arrow_flight::flight_service_client::FlightServiceClient::new(f.channel.clone());
    let result = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut s = raw.do_get(req).await?.into_inner();
        while s.message().await?.is_some() {}
        Ok::<_, tonic::Status>(())
    })
    .await
    .expect("the query ran past the client's deadline");
    let status = result.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status}");
    assert!(status.message().contains("grpc-timeout"), "{status}");
    // The grpc-timeout of a GetFlightInfo bounds that call, not the query
    // it starts: a DoGet without one gets the whole result of a query that
    // runs past it (a count over 2 x 10^8 rows).
    let cmd = arrow_flight::sql::CommandStatementQuery {
        query: "SELECT count(*) AS n FROM generate_series(1, 200000000)".into(),
        transaction_id: None,
    };
    let descriptor = arrow_flight::FlightDescriptor::new_cmd(
        arrow_flight::sql::ProstMessageExt::as_any(&cmd).encode_to_vec(),
    );
    let mut req = tonic::Request::new(descriptor);
    req.set_timeout(std::time::Duration::from_millis(50));
    let info = raw.get_flight_info(req).await.unwrap().into_inner();
    assert_eq!(single_count(&f.fetch(info).await), 200_000_000);
    f.query("SELECT 1").await;
    f.stop().await;
}

/// Queries share a bounded memory pool: a join whose build side does not
/// fit fails with RESOURCE_EXHAUSTED (not an OOM kill), and the server keeps
/// answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_memory_is_bounded() {
    let mut f = Fixture::start_full(
        ServerOptions::default(),
        quiver::EngineOptions {
            query_memory_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .await;
    let sql = "SELECT count(*) FROM generate_series(1, 2000000) a \
               JOIN generate_series(1, 2000000) b ON a.value = b.value";
    let e = match f.client.execute(sql.into(), None).await {
        Ok(info) => {
            let ticket = info.endpoint[0].ticket.clone().unwrap();
            let stream = f.client.do_get(ticket).await.unwrap();
            stream
                .try_collect::<Vec<_>>()
                .await
                .unwrap_err()
                .to_string()
        }
        Err(e) => e.to_string(),
    };
    assert!(e.contains("Resources exhausted"), "{e}");
    assert!(e.contains("resources") || e.contains("Resource"), "{e}");
    let rows = f
        .query("SELECT count(*) FROM generate_series(1, 1000)")
        .await;
    assert_eq!(rows[0].column(0).as_primitive::<Int64Type>().value(0), 1000);
    f.stop().await;
}

/// With a query runtime, a query's work (the operators' tasks, the fused
/// top-k's shares of the scan) runs on that runtime's threads, not on the
/// threads serving the requests: a marker function in the filter records
/// the thread that evaluates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_run_on_the_query_runtime() {
    use arrow::array::{Array, BooleanArray};
    use arrow::datatypes::DataType;
    use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
    use std::collections::BTreeSet;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("test-query-runtime")
        .enable_all()
        .build()
        .unwrap();
    let seen = Arc::new(parking_lot::Mutex::new(BTreeSet::<String>::new()));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    let engine = Engine::new(store.clone())
        .unwrap()
        .with_query_runtime(runtime.handle().clone());
    let marks = seen.clone();
    engine.context().register_udf(create_udf(
        "seen_on",
        vec![DataType::Int64],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let name = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_string();
            marks.lock().insert(name);
            let rows = match &args[0] {
                ColumnarValue::Array(a) => a.len(),
                ColumnarValue::Scalar(_) => 1,
            };
            Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(vec![
                true;
                rows
            ]))))
        }),
    ));
    let mut f = Fixture::start_engine(engine, ServerOptions::default(), dir).await;
    f.table_t(50_000).await;
    store.flush_all().await.unwrap();
    f.insert_t(50_001, 50_010).await;
    seen.lock().clear();

    let count = f.query("SELECT count(*) FROM t WHERE seen_on(id)").await;
    assert_eq!(
        count[0].column(0).as_primitive::<Int64Type>().value(0),
        50_010
    );
    let general = std::mem::take(&mut *seen.lock());
    assert_eq!(general, BTreeSet::from(["test-query-runtime".to_string()]));

    let sql = "SELECT id FROM t WHERE seen_on(id) ORDER BY l2_distance(v, [3.0, 1.0]) LIMIT 3";
    let plan = f.query(&format!("EXPLAIN {sql}")).await;
    let text = arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    assert!(text.contains("VectorTopKExec"), "{text}");
    seen.lock().clear();
    let ids: Vec<i64> = f
        .query(sql)
        .await
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids, [3, 2, 4]);
    let topk = std::mem::take(&mut *seen.lock());
    assert_eq!(topk, BTreeSet::from(["test-query-runtime".to_string()]));

    // Statements that write run there too.
    assert_eq!(
        f.update("DELETE FROM t WHERE seen_on(id) AND id > 50005")
            .await,
        5
    );
    let n = f
        .update("INSERT INTO t SELECT id + 100000, v FROM t WHERE seen_on(id) AND id <= 10")
        .await;
    assert_eq!(n, 10);
    let dml = std::mem::take(&mut *seen.lock());
    assert_eq!(dml, BTreeSet::from(["test-query-runtime".to_string()]));
    let count = f.query("SELECT count(*) FROM t").await;
    assert_eq!(
        count[0].column(0).as_primitive::<Int64Type>().value(0),
        50_015
    );

    f.stop().await;
    runtime.shutdown_background();
}
