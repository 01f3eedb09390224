"""The intent of the generic ADBC driver validation suite
(github adbc-drivers/validation), in our own code: its data-driven type
cases (queries/type/select, type/bind, type/literal), its ingest tests
(tests/ingest.py) and its metadata tests (tests/connection.py:
get_objects, get_table_schema), run against quiver through the real ADBC
Flight SQL driver. Where quiver returns another type than the suite's
default expectation, the case says so (the suite's "quirk" overrides do
the same for other drivers); docs/ has the list.

Every table here starts the way the suite's do: a first column that is
not a key (an INTEGER `idx`, or a nullable value); quiver gives such
tables a generated key, so they set up and keep every row.
"""

import datetime
import decimal

import adbc_driver_manager
import pyarrow as pa
import pytest

D = decimal.Decimal
UTC = datetime.timezone.utc


def query(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def drop(cur, name):
    cur.execute(f'DROP TABLE IF EXISTS "{name}"')


# --- type/select: a column declared in SQL, filled with literals --------
# (name, SQL type, literals, expected Arrow type, expected values)
SELECT = [
    ("int16", "SMALLINT", ["0", "-32768", "32767"], pa.int16(), [0, -32768, 32767]),
    ("int32", "INT", ["0", "-2147483648", "2147483647"], pa.int32(), [0, -2147483648, 2147483647]),
    ("int64", "BIGINT", ["0", "-9223372036854775808", "9223372036854775807"], pa.int64(), [0, -(2**63), 2**63 - 1]),
    ("float32", "REAL", ["3.5", "-16777216", "0"], pa.float32(), [3.5, -16777216.0, 0.0]),
    ("float64", "DOUBLE PRECISION", ["1.7976931348623157e308", "-2.5", "0"], pa.float64(), [1.7976931348623157e308, -2.5, 0.0]),
    ("boolean", "BOOLEAN", ["TRUE", "FALSE", "TRUE"], pa.bool_(), [True, False, True]),
    ("decimal", "NUMERIC(10, 2)", ["123.45", "-99999999.99", "0"], pa.decimal128(10, 2), [D("123.45"), D("-99999999.99"), D("0.00")]),
    ("string", "VARCHAR(1000)", ["''", "'hello world'", "'\u00e9\u4e16\U0001f680'"], pa.string(), ["", "hello world", "\u00e9\u4e16\U0001f680"]),
    ("binary", "VARBINARY(1000)", ["X''", "X'00FF'", "X'DEADBEEF'"], pa.binary(), [b"", b"\x00\xff", b"\xde\xad\xbe\xef"]),
    ("blob", "BLOB", ["X'01'", "X''", "X'0203'"], pa.binary(), [b"\x01", b"", b"\x02\x03"]),
    ("date", "DATE", ["DATE '1970-01-01'", "DATE '2023-05-15'", "DATE '1960-01-01'"], pa.date32(), [datetime.date(1970, 1, 1), datetime.date(2023, 5, 15), datetime.date(1960, 1, 1)]),
    ("time", "TIME", ["TIME '00:00:00'", "TIME '12:34:56.789'", "TIME '23:59:59'"], pa.time64("us"), [datetime.time(0), datetime.time(12, 34, 56, 789000), datetime.time(23, 59, 59)]),
    ("time0", "TIME(0)", ["TIME '00:00:01'", "TIME '12:34:56'", "TIME '23:59:59'"], pa.time32("s"), [datetime.time(0, 0, 1), datetime.time(12, 34, 56), datetime.time(23, 59, 59)]),
    ("time3", "TIME(3)", ["TIME '00:00:00.001'", "TIME '12:34:56.789'", "TIME '23:59:59'"], pa.time32("ms"), [datetime.time(0, 0, 0, 1000), datetime.time(12, 34, 56, 789000), datetime.time(23, 59, 59)]),
    ("time6", "TIME(6)", ["TIME '00:00:00.000001'", "TIME '12:34:56.789'", "TIME '23:59:59'"], pa.time64("us"), [datetime.time(0, 0, 0, 1), datetime.time(12, 34, 56, 789000), datetime.time(23, 59, 59)]),
]
for p, unit in [(0, "s"), (1, "ms"), (2, "ms"), (3, "ms"), (4, "us"), (5, "us"), (6, "us"), (7, "ns"), (8, "ns"), (9, "ns")]:
    SELECT.append((
        f"timestamp{p}", f"TIMESTAMP({p})",
        # Years 1 and 9999 where the unit reaches them (all but ns).
        ["TIMESTAMP '1970-01-01 00:00:00'", "TIMESTAMP '2023-05-15 12:34:56'",
         "TIMESTAMP '1969-12-31 23:59:59'" if unit == "ns" else "TIMESTAMP '0001-01-01 00:00:00'",
         "TIMESTAMP '2262-04-11 00:00:00'" if unit == "ns" else "TIMESTAMP '9999-12-31 23:59:59'"],
        pa.timestamp(unit),
        [datetime.datetime(1970, 1, 1), datetime.datetime(2023, 5, 15, 12, 34, 56),
         datetime.datetime(1969, 12, 31, 23, 59, 59) if unit == "ns" else datetime.datetime(1, 1, 1),
         datetime.datetime(2262, 4, 11) if unit == "ns" else datetime.datetime(9999, 12, 31, 23, 59, 59)],
    ))
    SELECT.append((
        f"timestamp{p}tz", f"TIMESTAMP({p}) WITH TIME ZONE",
        ["TIMESTAMP '1970-01-01 00:00:00'", "TIMESTAMP '2023-05-15 12:34:56'", "TIMESTAMP '1969-12-31 23:59:59'"],
        pa.timestamp(unit, tz="UTC"),
        [datetime.datetime(1970, 1, 1, tzinfo=UTC), datetime.datetime(2023, 5, 15, 12, 34, 56, tzinfo=UTC), datetime.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)],
    ))


@pytest.mark.parametrize("name,sql_type,literals,arrow_type,values", SELECT, ids=[c[0] for c in SELECT])
def test_select_type(conn, name, sql_type, literals, arrow_type, values):
    table = f"test_{name}"
    with conn.cursor() as cur:
        drop(cur, table)
        cur.execute(f'CREATE TABLE "{table}" (idx INTEGER, res {sql_type})')
        rows = ", ".join(f"({i}, {lit})" for i, lit in enumerate(literals)) + f", ({len(literals)}, NULL)"
        cur.execute(f'INSERT INTO "{table}" (idx, res) VALUES {rows}')
        assert cur.fetchall() == [(len(literals) + 1,)]
        # The result's schema, planned (execute_schema) and as run, and the
        # table's (get_table_schema).
        assert cur.adbc_execute_schema(f'SELECT "res" FROM "{table}"').field("res").type == arrow_type
    got = query(conn, f'SELECT "res" FROM "{table}" ORDER BY "idx"')
    assert got.schema.field("res").type == arrow_type
    assert got.column("res").to_pylist() == values + [None]
    assert conn.adbc_get_table_schema(table).field("res").type == arrow_type


# --- type/bind: an Arrow batch bound to INSERT ... VALUES ($1, $2) -------
# (name, SQL type, bound values, expected Arrow type back)
BIND = [
    ("int16", "SMALLINT", pa.array([1, -32768, 32767, None], pa.int16()), pa.int16()),
    ("int32", "INT", pa.array([1, -(2**31), 2**31 - 1, None], pa.int32()), pa.int32()),
    ("int64", "BIGINT", pa.array([1, -(2**63), 2**63 - 1, None], pa.int64()), pa.int64()),
    ("float16", "REAL", pa.array([1.5, -2.0, 65504.0, None], pa.float16()), pa.float32()),
    ("float32", "REAL", pa.array([1.5, -3.4028235e38, 0.0, None], pa.float32()), pa.float32()),
    ("float64", "DOUBLE PRECISION", pa.array([1.5, -1e308, 0.0, None], pa.float64()), pa.float64()),
    ("boolean", "BOOLEAN", pa.array([True, False, True, None]), pa.bool_()),
    ("decimal", "NUMERIC(10, 2)", pa.array([D("1.25"), D("-99999999.99"), D("0"), None], pa.decimal128(10, 2)), pa.decimal128(10, 2)),
    ("date", "DATE", pa.array([0, 19492, -3652, None], pa.date32()), pa.date32()),
    ("string", "VARCHAR", pa.array(["", "x", "\u4e16", None]), pa.string()),
    ("large_string", "VARCHAR", pa.array(["", "x", "y" * 1000, None], pa.large_string()), pa.string()),
    ("string_view", "VARCHAR", pa.array(["", "short", "a string longer than twelve", None], pa.string_view()), pa.string()),
    ("binary", "BYTEA", pa.array([b"", b"\x00", b"abc", None]), pa.binary()),
    ("large_binary", "BYTEA", pa.array([b"", b"\x00", b"abc", None], pa.large_binary()), pa.binary()),
    ("binary_view", "BYTEA", pa.array([b"", b"\x00", b"z" * 40, None], pa.binary_view()), pa.binary()),
    ("fixed_size_binary", "BYTEA", pa.array([b"abcd", b"\x00\x00\x00\x00", b"wxyz", None], pa.binary(4)), pa.binary()),
    ("time_s", "TIME(0)", pa.array([0, 3600, 86399, None], pa.time32("s")), pa.time32("s")),
    ("time_ms", "TIME(3)", pa.array([0, 1, 86_399_999, None], pa.time32("ms")), pa.time32("ms")),
    ("time_us", "TIME(6)", pa.array([0, 1, 86_399_999_999, None], pa.time64("us")), pa.time64("us")),
    ("time_ns", "TIME(9)", pa.array([0, 1, 86_399_999_999_999, None], pa.time64("ns")), pa.time64("ns")),
]
for p, unit in [(0, "s"), (3, "ms"), (6, "us"), (9, "ns")]:
    BIND.append((f"timestamp_{unit}", f"TIMESTAMP({p})", pa.array([0, 1, 1_700_000_000, None], pa.timestamp(unit)), pa.timestamp(unit)))
    BIND.append((f"timestamptz_{unit}", f"TIMESTAMP({p}) WITH TIME ZONE", pa.array([0, 1, 1_700_000_000, None], pa.timestamp(unit, tz="UTC")), pa.timestamp(unit, tz="UTC")))


@pytest.mark.parametrize("name,sql_type,values,arrow_type", BIND, ids=[c[0] for c in BIND])
def test_bind_type(conn, name, sql_type, values, arrow_type):
    table = f"bind_{name}"
    with conn.cursor() as cur:
        drop(cur, table)
        cur.execute(f'CREATE TABLE "{table}" (idx INT, res {sql_type})')
        batch = pa.record_batch([pa.array(range(len(values)), pa.int32()), values], names=["0", "1"])
        cur.executemany(f'INSERT INTO "{table}" VALUES ($1, $2)', batch)
        assert cur.rowcount == len(values)
    got = query(conn, f'SELECT "res" FROM "{table}" ORDER BY "idx"')
    assert got.schema.field("res").type == arrow_type
    assert got.column("res").to_pylist() == values.cast(arrow_type).to_pylist()


def test_bind_dictionary_and_null_typed_parameters(conn):
    # validation tests/query.py::test_query_bind_dictionary, statement.py
    # test_parameter_null_typed.
    with conn.cursor() as cur:
        drop(cur, "bind_dict")
        cur.execute('CREATE TABLE "bind_dict" (idx INT, res VARCHAR)')
        batch = pa.record_batch([pa.array([1, 2, 3], pa.int32()), pa.array(["a", "b", "a"]).dictionary_encode()], names=["0", "1"])
        cur.executemany('INSERT INTO "bind_dict" VALUES ($1, $2)', batch)
        nulls = pa.record_batch([pa.array([4], pa.int32()), pa.nulls(1)], names=["0", "1"])
        cur.executemany('INSERT INTO "bind_dict" VALUES ($1, $2)', nulls)
    assert query(conn, 'SELECT res FROM "bind_dict" ORDER BY idx').column("res").to_pylist() == ["a", "b", "a", None]


# --- type/literal: a literal selected on its own -------------------------
LITERAL = [
    ("SELECT CAST(42 AS SMALLINT) AS res", pa.int16(), 42),
    ("SELECT CAST(42 AS INT) AS res", pa.int32(), 42),
    ("SELECT CAST(42 AS BIGINT) AS res", pa.int64(), 42),
    ("SELECT CAST(1.5 AS REAL) AS res", pa.float32(), 1.5),
    ("SELECT CAST(1.5 AS DOUBLE PRECISION) AS res", pa.float64(), 1.5),
    ("SELECT TRUE AS res", pa.bool_(), True),
    ("SELECT CAST('123.45' AS NUMERIC(10, 2)) AS res", pa.decimal128(10, 2), D("123.45")),
    ("SELECT 'hello' AS res", pa.string(), "hello"),
    ("SELECT X'00FF' AS res", pa.binary(), b"\x00\xff"),
    ("SELECT from_hex('00ff') AS res", pa.binary(), b"\x00\xff"),
    ("SELECT DATE '2023-05-15' AS res", pa.date32(), datetime.date(2023, 5, 15)),
    ("SELECT TIME '12:34:56' AS res", pa.time64("us"), datetime.time(12, 34, 56)),
    ("SELECT TIMESTAMP '2023-05-15 12:34:56' AS res", pa.timestamp("us"), datetime.datetime(2023, 5, 15, 12, 34, 56)),
    ("SELECT CAST(TIMESTAMP '2023-05-15 12:34:56' AS TIMESTAMP WITH TIME ZONE) AS res", pa.timestamp("us", tz="UTC"), datetime.datetime(2023, 5, 15, 12, 34, 56, tzinfo=UTC)),
    ("SELECT TIMESTAMP '0001-01-01 00:00:00' AS res", pa.timestamp("us"), datetime.datetime(1, 1, 1)),
]


@pytest.mark.parametrize("sql,arrow_type,value", LITERAL, ids=[c[0] for c in LITERAL])
def test_literal_type(conn, sql, arrow_type, value):
    got = query(conn, sql)
    assert got.schema.field("res").type == arrow_type
    assert got.column("res").to_pylist() == [value]


# --- tests/ingest.py ------------------------------------------------------
def ingest_table(n, offset=0):
    return pa.table({"idx": pa.array(range(offset, offset + n), pa.int64()), "value": pa.array([f"v{i}" for i in range(offset, offset + n)])})


def test_ingest_modes_and_errors(conn):
    with conn.cursor() as cur:
        drop(cur, "ing_modes")
        assert cur.adbc_ingest("ing_modes", ingest_table(3), mode="create") == 3
        with pytest.raises(adbc_driver_manager.Error, match="already exists") as err:
            cur.adbc_ingest("ing_modes", ingest_table(3), mode="create")
        assert err.value.status_code == adbc_driver_manager.AdbcStatusCode.ALREADY_EXISTS
        assert cur.adbc_ingest("ing_modes", ingest_table(2, 3), mode="append") == 2
        assert cur.adbc_ingest("ing_modes", ingest_table(2, 3), mode="create_append") == 2
        assert query(conn, 'SELECT count(*) AS n FROM "ing_modes"').column("n")[0].as_py() == 7
        assert cur.adbc_ingest("ing_modes", ingest_table(1, 100), mode="replace") == 1
        assert query(conn, 'SELECT idx FROM "ing_modes"').column("idx").to_pylist() == [100]
        with pytest.raises(adbc_driver_manager.Error, match="ing_missing"):
            cur.adbc_ingest("ing_missing", ingest_table(1), mode="append")
        # An appended column the table lacks: refused, nothing written; with
        # create_append the table exists (ALREADY_EXISTS), as the suite's
        # test_createappend_schema_mismatch expects.
        extra = ingest_table(1, 200).append_column("other", pa.array([1]))
        with pytest.raises(adbc_driver_manager.Error, match="collection 'ing_modes' already exists with other columns: unknown column 'other'") as err:
            cur.adbc_ingest("ing_modes", extra, mode="create_append")
        assert err.value.status_code == adbc_driver_manager.AdbcStatusCode.ALREADY_EXISTS
        with pytest.raises(adbc_driver_manager.Error, match="unknown column 'other'") as err:
            cur.adbc_ingest("ing_modes", extra, mode="append")
        assert err.value.status_code == adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT
        # A target catalog and schema: quiver's own are accepted.
        assert cur.adbc_ingest("ing_ns", ingest_table(2), mode="create", catalog_name="quiver", db_schema_name="public") == 2
        with pytest.raises(adbc_driver_manager.Error, match="collections live in quiver.public"):
            cur.adbc_ingest("ing_ns", ingest_table(2), mode="append", db_schema_name="other")
        with pytest.raises(adbc_driver_manager.Error, match="temporary tables are not supported"):
            cur.adbc_ingest("ing_tmp", ingest_table(2), mode="create", temporary=True)


def test_ingest_streams_large_batches_many_columns_and_long_values(conn):
    with conn.cursor() as cur:
        drop(cur, "ing_multi")
        reader = pa.RecordBatchReader.from_batches(
            ingest_table(1).schema, [ingest_table(10, 0).to_batches()[0], ingest_table(8, 10).to_batches()[0]]
        )
        assert cur.adbc_ingest("ing_multi", reader, mode="create") == 18
        drop(cur, "ing_large")
        assert cur.adbc_ingest("ing_large", ingest_table(6000), mode="create") == 6000
        drop(cur, "ing_wide")
        wide = pa.table({f"col{i}": pa.array([i, i + 1], pa.int32()) for i in range(1000)})
        assert cur.adbc_ingest("ing_wide", wide, mode="create") == 2
        drop(cur, "ing_long")
        long = pa.table({"idx": pa.array([1, 2], pa.int64()), "value": pa.array(["x" * 131072, "y" * 65536])})
        assert cur.adbc_ingest("ing_long", long, mode="create") == 2
    assert query(conn, 'SELECT count(*) AS n FROM "ing_multi"').column("n")[0].as_py() == 18
    assert query(conn, 'SELECT sum(idx) AS s FROM "ing_large"').column("s")[0].as_py() == sum(range(6000))
    assert query(conn, 'SELECT "col999" FROM "ing_wide" ORDER BY "col999"').column("col999").to_pylist() == [999, 1000]
    assert query(conn, 'SELECT length(value) AS n FROM "ing_long" ORDER BY idx').column("n").to_pylist() == [131072, 65536]


# --- tests/connection.py: get_objects, get_table_schema -------------------
@pytest.fixture()
def objects_table(conn):
    # The suite's fixture: `ints int32` with a NULL, `strs utf8`.
    with conn.cursor() as cur:
        drop(cur, "getobjects_t")
        t = pa.table({"ints": pa.array([1, None, 3], pa.int32()), "strs": pa.array(["a", "b", None])})
        assert cur.adbc_ingest("getobjects_t", t, mode="create") == 3
    return "getobjects_t"


def find_table(objects, name):
    for cat in objects:
        for sch in cat["catalog_db_schemas"] or []:
            for tab in sch["db_schema_tables"] or []:
                if tab["table_name"] == name:
                    return cat["catalog_name"], sch["db_schema_name"], tab
    return None


def test_get_objects_finds_the_table_and_its_columns(conn, objects_table):
    objs = conn.adbc_get_objects(depth="columns").read_all().to_pylist()
    cat, sch, tab = find_table(objs, objects_table)
    assert (cat, sch) == ("quiver", "public")
    assert [(c["column_name"], c["ordinal_position"]) for c in tab["table_columns"]] == [("ints", 1), ("strs", 2)]
    ints = tab["table_columns"][0]
    assert ints["xdbc_type_name"] == "INTEGER"
    # Filters: the column name, the table name exactly, bogus ones.
    objs = conn.adbc_get_objects(depth="columns", table_name_filter=objects_table, column_name_filter="in%").read_all().to_pylist()
    assert [c["column_name"] for c in find_table(objs, objects_table)[2]["table_columns"]] == ["ints"]
    assert find_table(conn.adbc_get_objects(depth="tables", table_name_filter="no_such_table").read_all().to_pylist(), objects_table) is None
    assert find_table(conn.adbc_get_objects(depth="tables", db_schema_filter="no_such_schema").read_all().to_pylist(), objects_table) is None
    cats = conn.adbc_get_objects(depth="catalogs", catalog_filter="no_such_catalog").read_all().to_pylist()
    assert cats == []


def test_get_table_schema_and_its_errors(conn, objects_table):
    schema = conn.adbc_get_table_schema(objects_table)
    assert schema.names == ["ints", "strs"]
    assert schema.field("ints").type == pa.int32() and schema.field("ints").nullable
    assert conn.adbc_get_table_schema(objects_table, catalog_filter="quiver", db_schema_filter="public").names == ["ints", "strs"]
    with pytest.raises(adbc_driver_manager.Error) as err:
        conn.adbc_get_table_schema("no_such_table")
    assert err.value.status_code == adbc_driver_manager.AdbcStatusCode.NOT_FOUND


def test_get_info_and_table_types(conn):
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "quiver"
    assert info["driver_name"] == "ADBC Flight SQL Driver - Go"
    assert conn.adbc_get_table_types() == ["TABLE"]
