"""Every Arrow type a DataFrame may carry goes in by ADBC bulk ingest and
comes back: the same type, or the documented stored type (docs/sql.md,
"Types"), with the same values, NULLs included; filters on it give the
same rows as pyarrow's own.

Ported intent: the ingest cases of the ADBC driver validation suite
(github adbc-drivers/validation, queries/ingest/*.txtcase: an `idx int64`
column and a `value` column of each type with its extremes and a NULL)
and the ADBC Flight SQL driver's type tests (apache/arrow-adbc,
go/adbc/driver/flightsql/flightsql_adbc_server_test.go, DataTypeTests).
"""

import datetime
import decimal

import adbc_driver_manager
import pyarrow as pa
import pyarrow.compute as pc
import pytest

BACKENDS = ("local", "s3")


def d(s):
    return decimal.Decimal(s)


# (name, input array, the type quiver returns or None for the same type)
CASES = [
    ("int8", pa.array([0, -128, 127, None], pa.int8()), None),
    ("int16", pa.array([0, -32768, 32767, None], pa.int16()), None),
    ("int32", pa.array([0, -(2**31), 2**31 - 1, None], pa.int32()), None),
    ("int64", pa.array([0, -(2**63), 2**63 - 1, None], pa.int64()), None),
    ("uint8", pa.array([0, 255, 1, None], pa.uint8()), None),
    ("uint16", pa.array([0, 65535, 1, None], pa.uint16()), None),
    ("uint32", pa.array([0, 2**32 - 1, 1, None], pa.uint32()), None),
    ("uint64", pa.array([0, 2**64 - 1, 1, None], pa.uint64()), None),
    ("float16", pa.array([0.5, -2.0, 65504.0, None], pa.float16()), pa.float32()),
    ("float32", pa.array([3.14, -3.4028235e38, 16777216.0, None], pa.float32()), None),
    ("float64", pa.array([1.7976931348623157e308, -2.2250738585072014e-308, 0.0, None], pa.float64()), None),
    ("boolean", pa.array([True, False, True, None]), None),
    ("decimal128", pa.array([d("0.00"), d("-99999999.99"), d("123.45"), None], pa.decimal128(10, 2)), None),
    ("decimal128_scale0", pa.array([d("999999999"), d("-1"), d("0"), None], pa.decimal128(10, 0)), None),
    ("decimal128_scale_eq_precision", pa.array([d("0.99"), d("-0.99"), d("0.01"), None], pa.decimal128(2, 2)), None),
    ("decimal256", pa.array([d("1" * 50), d("-12345.678"), d("0"), None], pa.decimal256(60, 3)), None),
    ("date32", pa.array([0, 19492, -3652, None], pa.date32()), None),
    ("date64", pa.array([0, 1_700_000_000_000, -86_400_000, None], pa.date64()), None),
    ("time32_s", pa.array([0, 86399, 3600, None], pa.time32("s")), None),
    ("time32_ms", pa.array([0, 86_399_999, 1, None], pa.time32("ms")), None),
    ("time64_us", pa.array([0, 86_399_999_999, 1, None], pa.time64("us")), None),
    ("time64_ns", pa.array([0, 86_399_999_999_999, 1, None], pa.time64("ns")), None),
    ("duration_s", pa.array([0, -5, 10**9, None], pa.duration("s")), None),
    ("duration_ns", pa.array([0, -5, 2**62, None], pa.duration("ns")), None),
    ("timestamp_s", pa.array([0, -62135596800, 253402300799, None], pa.timestamp("s")), None),
    ("timestamp_ms", pa.array([0, 1, 1_700_000_000_000, None], pa.timestamp("ms")), None),
    ("timestamp_us", pa.array([0, -1, 1_700_000_000_000_000, None], pa.timestamp("us")), None),
    ("timestamp_ns", pa.array([0, -(2**63) + 1, 2**63 - 1, None], pa.timestamp("ns")), None),
    ("timestamptz_utc", pa.array([0, 1, 1_700_000_000_000_000, None], pa.timestamp("us", tz="UTC")), None),
    ("timestamptz_tokyo", pa.array([0, 1, 1_700_000_000, None], pa.timestamp("s", tz="Asia/Tokyo")), None),
    ("string", pa.array(["", "hello world", "\u00e9\u4e16\U0001f680", None]), None),
    ("large_string", pa.array(["a", "b" * 1000, "", None], pa.large_string()), pa.string()),
    ("string_view", pa.array(["short", "a longer string than twelve bytes", "", None], pa.string_view()), pa.string()),
    ("binary", pa.array([b"", b"\x00\xff", b"abc", None]), None),
    ("large_binary", pa.array([b"x", b"\x00" * 100, b"", None], pa.large_binary()), pa.binary()),
    ("binary_view", pa.array([b"x", b"y" * 40, b"", None], pa.binary_view()), pa.binary()),
    ("fixed_size_binary", pa.array([b"abcd", b"\x00\x01\x02\x03", b"wxyz", None], pa.binary(4)), None),
    ("dictionary", pa.array(["red", "green", "red", None]).dictionary_encode(), pa.string()),
    ("list_int", pa.array([[1, 2], [], [None, 3], None], pa.list_(pa.int64())), None),
    ("list_string", pa.array([["a"], ["b", "c"], [], None], pa.list_(pa.string())), None),
    ("large_list", pa.array([[1], [2, 3], [], None], pa.large_list(pa.int32())), pa.list_(pa.int32())),
    ("struct", pa.array([{"a": 1, "b": "x"}, {"a": None, "b": "y"}, {"a": 3, "b": None}, None], pa.struct([("a", pa.int64()), ("b", pa.string())])), None),
]


def table_of(values):
    return pa.table({"idx": pa.array(range(len(values)), pa.int64()), "value": values})


@pytest.mark.parametrize("name,values,returned", CASES, ids=[c[0] for c in CASES])
def test_every_type_round_trips_through_ingest(conn, name, values, returned):
    table = f"ty_{name}"
    with conn.cursor() as cur:
        cur.execute(f'DROP TABLE IF EXISTS "{table}"')
        assert cur.adbc_ingest(table, table_of(values), mode="create") == len(values)
        # A second write, so a query reads two segments or a segment and
        # the growing one.
        assert cur.adbc_ingest(table, table_of(values).set_column(0, "idx", pa.array(range(10, 10 + len(values)), pa.int64())), mode="append") == len(values)
        cur.execute(f'SELECT idx, value FROM "{table}" ORDER BY idx')
        back = cur.fetch_arrow_table()
    want_type = returned or values.type
    assert back.schema.field("value").type == want_type
    want = values.cast(want_type) if returned else values
    got = back.column("value")
    assert got.to_pylist() == want.to_pylist() * 2
    # The table's schema says the same.
    assert conn.adbc_get_table_schema(table).field("value").type == want_type


FILTERS = [
    ("int32", pa.array([5, -3, 7, None, 100], pa.int32()), "value > 4", lambda v: pc.greater(v, 4)),
    ("decimal128", pa.array([d("1.50"), d("-2.25"), d("9.99"), None, d("0.01")], pa.decimal128(10, 2)), "value < 2", lambda v: pc.less(v, pa.scalar(d("2"), pa.decimal128(10, 2)))),
    ("date32", pa.array([0, 19492, -3652, None, 100], pa.date32()), "value >= DATE '1970-04-11'", lambda v: pc.greater_equal(v, pa.scalar(100, pa.date32()))),
    ("timestamp_us", pa.array([0, 10**15, -(10**12), None, 5], pa.timestamp("us")), "value > TIMESTAMP '1970-01-01 00:00:00'", lambda v: pc.greater(v, pa.scalar(0, pa.timestamp("us")))),
    ("time64_us", pa.array([0, 3_600_000_000, 60_000_000, None, 1], pa.time64("us")), "value >= TIME '00:01:00'", lambda v: pc.greater_equal(v, pa.scalar(60_000_000, pa.time64("us")))),
    # DataFusion reads a TIMESTAMP literal compared with a zoned column as
    # a time in the column's zone: 09:00 in Tokyo is the epoch.
    ("timestamptz", pa.array([0, 10**15, -(10**12), None, 5], pa.timestamp("us", tz="Asia/Tokyo")), "value > TIMESTAMP '1970-01-01T09:00:00'", lambda v: pc.greater(v, pa.scalar(0, pa.timestamp("us", tz="UTC")))),
    ("string", pa.array(["b", "a", "c", None, "bb"]), "value >= 'b'", lambda v: pc.greater_equal(v, "b")),
    ("dictionary", pa.array(["red", "blue", "red", None, "green"]).dictionary_encode(), "value = 'red'", lambda v: pc.equal(v.cast(pa.string()), "red")),
]


@pytest.mark.parametrize("name,values,where,mask", FILTERS, ids=[f[0] for f in FILTERS])
def test_filters_on_each_type_match_pyarrow(conn, name, values, where, mask):
    """Filters run in the Parquet scan and prune segments on their min/max:
    the rows must be exactly pyarrow's, with each write its own segment."""
    table = f"tf_{name}"
    with conn.cursor() as cur:
        cur.execute(f'DROP TABLE IF EXISTS "{table}"')
        # One row per write, flushed apart (mode create then append).
        for i in range(len(values)):
            one = pa.table({"idx": pa.array([i], pa.int64()), "value": values.slice(i, 1)})
            cur.adbc_ingest(table, one, mode="create" if i == 0 else "append")
        cur.execute(f'SELECT idx FROM "{table}" WHERE {where} ORDER BY idx')
        got = [r[0] for r in cur.fetchall()]
    want = [i for i, m in enumerate(mask(values).to_pylist()) if m]
    assert got == want


def test_a_type_quiver_cannot_store_is_refused_naming_column_and_type(conn):
    cases = [
        (pa.nulls(2), "column 'value' of collection 'bad_null' has type Null"),
        (pa.array([d("100")], pa.decimal128(2, -2)), "column 'value' of collection 'bad_dec' has type Decimal128\\(2, -2\\): a negative decimal scale"),
        (pa.array([[1.0, 2.0]], pa.list_(pa.float64())), "column 'value' of collection 'bad_list' is a variable-length list of Float64"),
        (pa.array([pa.MonthDayNano([1, 2, 3])], pa.month_day_nano_interval()), "column 'value' of collection 'bad_interval' has type Interval\\(MonthDayNano\\), which quiver does not store"),
    ]
    names = ["bad_null", "bad_dec", "bad_list", "bad_interval"]
    with conn.cursor() as cur:
        for (values, message), name in zip(cases, names):
            with pytest.raises(adbc_driver_manager.Error, match=message):
                cur.adbc_ingest(name, table_of(values), mode="create")
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'bad_%'")
        assert cur.fetchone() == (0,)


def test_appends_convert_within_a_type_family_and_refuse_across(conn):
    with conn.cursor() as cur:
        cur.execute('DROP TABLE IF EXISTS "conv"')
        base = pa.table({"idx": pa.array([0], pa.int64()), "t": pa.array([1], pa.time64("us")), "dec": pa.array([d("1.50")], pa.decimal128(10, 2))})
        cur.adbc_ingest("conv", base, mode="create")
        # Time32(ms) into Time64(us), Decimal128(5,1) into (10,2): converted.
        more = pa.table({"idx": pa.array([1], pa.int64()), "t": pa.array([2], pa.time32("ms")), "dec": pa.array([d("2.5")], pa.decimal128(5, 1))})
        assert cur.adbc_ingest("conv", more, mode="append") == 1
        cur.execute('SELECT t, dec FROM "conv" ORDER BY idx')
        assert cur.fetchall() == [(datetime.time(0, 0, 0, 1), d("1.50")), (datetime.time(0, 0, 0, 2000), d("2.50"))]
        # Text into a time column: refused, naming both types.
        bad = pa.table({"idx": pa.array([2], pa.int64()), "t": pa.array(["noon"])})
        with pytest.raises(adbc_driver_manager.Error, match="column 't' of collection 'conv' has type Time64\\(µs\\), but the input has Utf8"):
            cur.adbc_ingest("conv", bad, mode="append")
        # A decimal that does not fit: refused.
        wide = pa.table({"idx": pa.array([3], pa.int64()), "dec": pa.array([d("123456789012.5")], pa.decimal128(15, 1))})
        with pytest.raises(adbc_driver_manager.Error, match="column 'dec' of collection 'conv'"):
            cur.adbc_ingest("conv", wide, mode="append")
        cur.execute('SELECT count(*) FROM "conv"')
        assert cur.fetchone() == (2,)
