"""Primary keys through the real ADBC driver, pandas and polars: a frame
without a declared key never loses rows; declared keys of every integer
and string type upsert; the key can be named for an ingest.

Ported intent: the ADBC driver validation suite (github adbc-drivers/validation,
tests/ingest.py and queries/ingest/*) ingests tables whose first column is an
`idx` that repeats, is int32, nullable, BOOLEAN, DATE or FLOAT, and expects
every row back; quiver used to key such tables on their first column.
"""

import adbc_driver_manager
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

HEADER_OPTION = "adbc.flight.sql.rpc.call_header.x-quiver-primary-key"


def rows(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def count(conn, name):
    return rows(conn, f'SELECT count(*) AS n FROM "{name}"').column("n")[0].as_py()


def test_a_frame_without_a_key_keeps_every_row(conn):
    frame = pa.table({"name": ["a", "a", "b", "b", "b"], "x": [1, 2, 3, 4, 5]})
    with conn.cursor() as cur:
        assert cur.adbc_ingest("frame", frame, mode="create") == 5
        assert count(conn, "frame") == 5
        # The same rows again are five rows more: nothing collapses.
        assert cur.adbc_ingest("frame", frame, mode="append") == 5
    assert count(conn, "frame") == 10
    got = rows(conn, "SELECT name, x FROM frame ORDER BY x, name").to_pydict()
    assert got == {"name": ["a", "a", "a", "a", "b", "b", "b", "b", "b", "b"], "x": [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]}
    # The generated key is hidden from SELECT * and the table's schema ...
    assert rows(conn, "SELECT * FROM frame LIMIT 1").column_names == ["name", "x"]
    assert conn.adbc_get_table_schema("frame").names == ["name", "x"]
    # ... but can be named, and is unique.
    ids = rows(conn, "SELECT _id FROM frame").column("_id").to_pylist()
    assert len(set(ids)) == 10
    # DELETE works by predicate.
    with conn.cursor() as cur:
        cur.execute("DELETE FROM frame WHERE name = 'a' AND x = 1")
        assert cur.fetchall() == [(2,)]
    assert count(conn, "frame") == 8
    assert rows(conn, "SELECT count(*) AS n FROM frame WHERE x = 1").column("n")[0].as_py() == 0


@pytest.mark.parametrize(
    "first",
    [
        pa.array([1, 1, 2], pa.int32()),
        pa.array([None, 5, 5], pa.int64()),
        pa.array([True, True, False]),
        pa.array([0, 0, 19492], pa.date32()),
        pa.array([1.5, 1.5, 2.5], pa.float32()),
    ],
    ids=["int32", "nullable", "boolean", "date", "float"],
)
def test_tables_of_the_validation_suite_keep_every_row(conn, first):
    # The shapes adbc-drivers/validation starts its tables with.
    name = f"vs_{first.type}".replace("[", "_").replace("]", "").replace(" ", "")
    table = pa.table({"idx": first, "value": pa.array(["p", "q", "r"])})
    with conn.cursor() as cur:
        cur.execute(f'DROP TABLE IF EXISTS "{name}"')
        assert cur.adbc_ingest(name, table, mode="create") == 3
        assert cur.adbc_ingest(name, table, mode="append") == 3
    back = rows(conn, f'SELECT idx, value FROM "{name}" ORDER BY value')
    assert back.num_rows == 6
    assert back.schema.field("idx").type == first.type
    assert sorted(back.column("value").to_pylist()) == ["p", "p", "q", "q", "r", "r"]


def test_pandas_to_sql_and_polars_write_database_append(conn):
    df = pd.DataFrame({"city": ["Oslo", "Oslo", "Rome"], "t": [1.0, 2.0, 3.0]})
    assert df.to_sql("cities", conn, index=False, if_exists="fail") == 3
    df.to_sql("cities", conn, index=False, if_exists="append")
    assert count(conn, "cities") == 6
    frame = pl.DataFrame({"k": ["x", "x"], "v": [1, 1]})
    frame.write_database("plain", conn, engine="adbc", if_table_exists="fail")
    frame.write_database("plain", conn, engine="adbc", if_table_exists="append")
    assert count(conn, "plain") == 4


def test_an_id_column_is_the_key_and_upserts(conn):
    t = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "v": ["a", "b", "c"]})
    with conn.cursor() as cur:
        assert cur.adbc_ingest("by_id", t, mode="create") == 3
        again = pa.table({"id": pa.array([2, 3, 4], pa.int64()), "v": ["B", "C", "D"]})
        assert cur.adbc_ingest("by_id", again, mode="append") == 3
    got = rows(conn, "SELECT id, v FROM by_id ORDER BY id").to_pydict()
    assert got == {"id": [1, 2, 3, 4], "v": ["a", "B", "C", "D"]}
    assert conn.adbc_get_table_schema("by_id").field("id").nullable is False


def test_repeated_keys_in_one_write_keep_the_last_and_count_once(conn):
    t = pa.table({"id": pa.array([7, 7, 8, 7], pa.int64()), "v": ["first", "second", "x", "last"]})
    with conn.cursor() as cur:
        # Milvus's upsert rule: of rows repeating a key, the last is stored;
        # the count is the rows stored.
        assert cur.adbc_ingest("repeats", t, mode="create") == 2
    assert rows(conn, "SELECT v FROM repeats WHERE id = 7").column("v").to_pylist() == ["last"]
    assert count(conn, "repeats") == 2


KEY_TYPES = [
    pa.int8(),
    pa.int16(),
    pa.int32(),
    pa.int64(),
    pa.uint8(),
    pa.uint16(),
    pa.uint32(),
    pa.uint64(),
    pa.string(),
    pa.large_string(),
    pa.string_view(),
]


@pytest.mark.parametrize("key_type", KEY_TYPES, ids=[str(t) for t in KEY_TYPES])
def test_keys_of_every_integer_and_string_type_upsert_and_delete(conn, key_type):
    name = f"k_{str(key_type).replace('_', '')}"
    is_text = pa.types.is_string(key_type) or pa.types.is_large_string(key_type) or pa.types.is_string_view(key_type)
    keys = ["10", "20", "30"] if is_text else [10, 20, 30]
    t = pa.table({"id": pa.array(keys, key_type), "v": [1.0, 2.0, 3.0]})
    with conn.cursor() as cur:
        cur.execute(f'DROP TABLE IF EXISTS "{name}"')
        assert cur.adbc_ingest(name, t, mode="create") == 3
        new_keys = ["20", "40"] if is_text else [20, 40]
        assert cur.adbc_ingest(name, pa.table({"id": pa.array(new_keys, key_type), "v": [22.0, 44.0]}), mode="append") == 2
        literal = "'30'" if is_text else "30"
        cur.execute(f'DELETE FROM "{name}" WHERE id = {literal}')
        assert cur.fetchall() == [(1,)]
    back = rows(conn, f'SELECT id, v FROM "{name}" ORDER BY v')
    assert back.column("v").to_pylist() == [1.0, 22.0, 44.0]
    # Integer keys keep their type; string keys come back as Utf8 (documented).
    assert back.schema.field("id").type == (pa.string() if is_text else key_type)


def test_an_unsigned_key_above_the_largest_signed_one_is_refused_naming_the_row(conn):
    t = pa.table({"id": pa.array([1, 2**63 + 5], pa.uint64()), "v": [1, 2]})
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error, match=r"primary key column 'id' of collection 'big_u64' has 9223372036854775813 at row 1"):
            cur.adbc_ingest("big_u64", t, mode="create")
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'big_u64'")
        assert cur.fetchone() == (0,)


def test_a_null_key_is_refused_naming_the_row_and_nothing_is_written(conn):
    with conn.cursor() as cur:
        cur.adbc_ingest("nk", pa.table({"id": pa.array([1], pa.int32()), "v": [1]}), mode="create")
        bad = pa.table({"id": pa.array([2, None, 3], pa.int32()), "v": [2, 3, 4]})
        with pytest.raises(adbc_driver_manager.Error, match="primary key column 'id' of collection 'nk' is null at row 1"):
            cur.adbc_ingest("nk", bad, mode="append")
    assert count(conn, "nk") == 1


def test_the_key_can_be_named_for_an_ingest(conn):
    t = pa.table({"user": ["ann", "bob", "ann"], "score": [1, 2, 3]})
    with conn.cursor() as cur:
        # The ADBC driver sends a statement's call_header option with its
        # bulk ingest: quiver reads the key from x-quiver-primary-key.
        cur.adbc_statement.set_options(**{HEADER_OPTION: "user"})
        assert cur.adbc_ingest("scores", t, mode="create") == 2
        assert cur.adbc_ingest("scores", pa.table({"user": ["bob"], "score": [20]}), mode="append") == 1
    got = rows(conn, 'SELECT "user", score FROM scores ORDER BY "user"').to_pydict()
    assert got == {"user": ["ann", "bob"], "score": [3, 20]}
    assert conn.adbc_get_table_schema("scores").field("user").nullable is False
    with conn.cursor() as cur:
        cur.adbc_statement.set_options(**{HEADER_OPTION: "nope"})
        with pytest.raises(adbc_driver_manager.Error, match="primary key column 'nope' is not a column of collection 'bad_key'"):
            cur.adbc_ingest("bad_key", t, mode="create")


def test_create_table_declares_the_key_or_leaves_it_generated(conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE declared (name VARCHAR NOT NULL, n INT, PRIMARY KEY (name))")
        cur.execute("INSERT INTO declared VALUES ('a', 1), ('b', 2)")
        cur.execute("INSERT INTO declared VALUES ('a', 10)")
        cur.execute("CREATE TABLE undeclared (name VARCHAR, n INT)")
        cur.execute("INSERT INTO undeclared VALUES ('a', 1), ('a', 1)")
        cur.execute("INSERT INTO undeclared VALUES ('a', 1)")
    assert rows(conn, "SELECT name, n FROM declared ORDER BY name").to_pydict() == {"name": ["a", "b"], "n": [10, 2]}
    assert count(conn, "undeclared") == 3


def test_generated_keys_stay_unique_across_a_restart(fresh_server):
    fresh_server.start()
    t = pa.table({"x": pa.array(np.arange(1000, dtype=np.int64))})
    with fresh_server.connect() as c, c.cursor() as cur:
        cur.adbc_ingest("gen", t, mode="create")
        cur.adbc_ingest("gen", t, mode="append")
    fresh_server.stop()
    fresh_server.start()
    with fresh_server.connect() as c:
        with c.cursor() as cur:
            cur.adbc_ingest("gen", t, mode="append")
        got = rows(c, "SELECT count(*) AS n, count(DISTINCT _id) AS d FROM gen").to_pydict()
    assert got == {"n": [3000], "d": [3000]}
