"""Flight SQL details a client library relies on, through the real ADBC
driver, raw pyarrow.flight and polars.

Ported intent (our own code, the upstream files named per test):
- apache/arrow-adbc python/adbc_driver_manager/tests/test_dbapi.py
  (test_executemany_empty, regression #3319; executemany with rows),
- apache/arrow-adbc python/adbc_driver_flightsql/tests/test_dbapi.py and
  test_lowlevel.py (execute_schema, prepared statements, options),
- apache/arrow-adbc go/adbc/driver/flightsql/flightsql_adbc_server_test.go
  (session options for the current catalog and schema, ExecuteSchema),
- adbc-drivers/validation tests/statement.py (test_parameter_execute,
  test_parameter_schema, test_parameter_null_typed, test_nonascii_queries,
  test_execute_schema_noalias) and tests/connection.py (current catalog).
"""

import adbc_driver_manager
import adbc_driver_manager.dbapi
import polars as pl
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from raw_flight import statement_query_descriptor


def rows(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


@pytest.fixture()
def sample(conn):
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS sample")
        cur.execute("CREATE TABLE sample (id BIGINT NOT NULL, value VARCHAR, PRIMARY KEY (id))")
    return "sample"


def test_executemany_with_no_rows_runs_nothing(conn, sample):
    # adbc_driver_manager test_dbapi.py::test_executemany_empty (#3319):
    # [], a zero-row batch and a zero-row table insert nothing, no error.
    schema = pa.schema([("0", pa.int64()), ("1", pa.string())])
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO sample VALUES (?, ?)", [])
        cur.executemany("INSERT INTO sample VALUES (?, ?)", pa.RecordBatch.from_pylist([], schema=schema))
        cur.executemany("INSERT INTO sample VALUES ($1, $2)", pa.Table.from_pylist([], schema=schema))
        assert cur.rowcount in (0, -1)
    assert rows(conn, "SELECT count(*) FROM sample") == [(0,)]


def test_executemany_runs_once_per_row_and_counts_them_all(conn, sample):
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO sample VALUES (?, ?)", [(1, "a"), (2, "b"), (3, None)])
        assert cur.rowcount == 3
        # A statement without parameters still runs once.
        cur.executemany("INSERT INTO sample VALUES (9, 'nine')", [])
        cur.execute("INSERT INTO sample VALUES (10, 'ten')")
    assert rows(conn, "SELECT id, value FROM sample ORDER BY id") == [(1, "a"), (2, "b"), (3, None), (10, "ten")]


def test_a_query_bound_to_several_rows_returns_each_in_turn(conn):
    # validation tests/statement.py::test_parameter_execute.
    with conn.cursor() as cur:
        cur.execute("SELECT 1 + $1 AS r", pa.record_batch([pa.array([1, 2, 3, 4], pa.int64())], names=["0"]))
        assert cur.fetchall() == [(2,), (3,), (4,), (5,)]
    with conn.cursor() as cur:
        # Bound to no rows (a stream of none): no rows, in the statement's
        # schema. (A zero-row *batch* the driver does not send at all.)
        empty = pa.Table.from_batches([], pa.schema([("0", pa.int64())]))
        cur.execute("SELECT 1 + $1 AS r", empty)
        assert cur.fetchall() == []


def test_parameter_schema_counts_the_parameters(conn):
    # validation tests/statement.py::test_parameter_schema.
    with conn.cursor() as cur:
        assert len(cur.adbc_prepare("SELECT 1 + $1")) == 1
        assert len(cur.adbc_prepare("SELECT 1 + $1 + $2")) == 2


def test_a_null_typed_parameter_binds_null(conn, sample):
    # validation tests/statement.py::test_parameter_null_typed.
    with conn.cursor() as cur:
        batch = pa.record_batch([pa.array([7001], pa.int64()), pa.nulls(1)], names=["id", "value"])
        cur.execute('INSERT INTO "sample" ("id", "value") VALUES ($1, $2)', batch)
    assert rows(conn, 'SELECT "value" FROM "sample" WHERE "id" = 7001') == [(None,)]


def test_execute_schema_with_and_without_prepare(conn, sample):
    # adbc_execute_schema goes through the prepared statement's
    # dataset_schema; the low-level call without prepare sends GetSchema
    # (CommandStatementQuery).
    with conn.cursor() as cur:
        assert cur.adbc_execute_schema("SELECT id + 1 FROM sample").names == ["sample.id + Int64(1)"]
        assert cur.adbc_execute_schema("SELECT id, value FROM sample") == pa.schema(
            [pa.field("id", pa.int64(), nullable=False), ("value", pa.string())]
        )
    stmt = adbc_driver_manager.AdbcStatement(conn.adbc_connection)
    try:
        stmt.set_sql_query("SELECT value, id * 2 AS twice FROM sample")
        schema = pa.schema(stmt.execute_schema())
        assert schema.names == ["value", "twice"]
        assert schema.field("twice").type == pa.int64()
    finally:
        stmt.close()


def test_nonascii_queries_round_trip(conn):
    # validation tests/statement.py::test_nonascii_queries.
    assert rows(conn, "SELECT 'Hello, \u4e16\u754c \U0001f680' AS greeting") == [("Hello, \u4e16\u754c \U0001f680",)]


def test_the_current_catalog_and_schema_can_be_read(conn):
    # Go driver: GetSessionOptions keys "catalog" and "schema".
    assert conn.adbc_current_catalog == "quiver"
    assert conn.adbc_current_db_schema == "public"
    conn.adbc_current_catalog = "quiver"  # setting it to what it is is fine
    with pytest.raises(adbc_driver_manager.Error, match="(?i)catalog|invalid"):
        conn.adbc_current_catalog = "elsewhere"
    assert conn.adbc_current_catalog == "quiver"


def test_polars_reads_through_a_flightsql_uri(server, conn, sample):
    with conn.cursor() as cur:
        cur.execute("INSERT INTO sample VALUES (1, 'a'), (2, 'b')")
    port = server.uri.rsplit(":", 1)[1]
    df = pl.read_database_uri(
        "SELECT id, value FROM sample ORDER BY id",
        uri=f"flightsql://127.0.0.1:{port}?transport=tcp",
        engine="adbc",
    )
    assert df.to_dict(as_series=False) == {"id": [1, 2], "value": ["a", "b"]}


def test_raw_flight_get_schema_and_list_actions(server, sample):
    client = flight.FlightClient(server.uri)
    try:
        schema = client.get_schema(statement_query_descriptor("SELECT id, value FROM sample")).schema
        assert schema.names == ["id", "value"]
        with pytest.raises((flight.FlightError, pa.ArrowInvalid), match="No field named nope"):
            client.get_schema(statement_query_descriptor("SELECT nope FROM sample"))
        actions = {a.type for a in client.list_actions()}
        assert actions == {
            "CreatePreparedStatement",
            "ClosePreparedStatement",
            "CancelFlightInfo",
            "SetSessionOptions",
            "GetSessionOptions",
            "CloseSession",
        }
        # What quiver does not do, it does not advertise.
        assert not actions & {"BeginTransaction", "EndTransaction", "BeginSavepoint", "EndSavepoint"}
    finally:
        client.close()


def test_unknown_ingest_options_are_refused(conn):
    with conn.cursor() as cur:
        cur.adbc_statement.set_options(**{"adbc.flight.sql.rpc.call_header.x-quiver-primary-key": ""})
        # An empty header names no key: an ordinary ingest.
        assert cur.adbc_ingest("no_opt", pa.table({"a": [1, 1]}), mode="create") == 2


def test_a_client_timeout_ends_the_query_and_the_servers_work(server):
    # apache/arrow-adbc go/adbc/driver/flightsql TimeoutTests: the
    # statement's fetch / query timeouts are client deadlines (grpc-timeout).
    import os
    import time

    def cpu(pid):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    with server.connect() as conn, conn.cursor() as cur:
        cur.adbc_statement.set_options(**{
            "adbc.flight.sql.rpc.timeout_seconds.fetch": "1",
            "adbc.flight.sql.rpc.timeout_seconds.query": "1",
        })
        started = time.monotonic()
        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute("SELECT sum(a.value * b.value) FROM range(0, 60000) a, range(0, 60000) b")
            cur.fetchall()
        assert err.value.status_code == adbc_driver_manager.AdbcStatusCode.TIMEOUT, err.value
        assert time.monotonic() - started < 30
    time.sleep(0.5)
    before = cpu(server.proc.pid)
    time.sleep(1.0)
    assert cpu(server.proc.pid) - before < 0.3, "the server kept working past the client's deadline"
    with server.connect() as conn:
        assert rows(conn, "SELECT 1") == [(1,)]
    with pytest.raises(adbc_driver_manager.Error, match="(?i)invalid timeout"):
        with server.connect() as conn, conn.cursor() as cur:
            cur.adbc_statement.set_options(**{"adbc.flight.sql.rpc.timeout_seconds.fetch": "-1"})
