"""quiver end to end through the real ADBC Flight SQL driver, pandas and polars.

Results are checked against numpy ground truth on random vectors.
"""

import signal

import adbc_driver_manager
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

# The tests on the module server run on a local directory and on S3 (SeaweedFS).
BACKENDS = ("local", "s3")

N = 10_000
DIM = 64
K = 10
CATEGORIES = np.array(["a", "b", "c", "d"])


def make_table(n=N, dim=DIM, seed=0, id_offset=0):
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim), dtype=np.float32)
    return pa.table(
        {
            "id": pa.array(np.arange(id_offset, id_offset + n, dtype=np.int64)),
            "category": pa.array(CATEGORIES[rng.integers(0, 4, n)]),
            "price": pa.array(rng.uniform(0, 100, n)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
        }
    )


def vectors(table):
    col = table.column("embedding").combine_chunks()
    dim = col.type.list_size
    return col.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float64)


def literal(q):
    return "[" + ", ".join(f"{float(x):.9g}" for x in q) + "]"


def true_distances(metric, x, q):
    q = q.astype(np.float64)
    if metric == "l2_distance":
        return np.sqrt(((x - q) ** 2).sum(axis=1))
    if metric == "cosine_distance":
        return 1.0 - (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    if metric == "inner_product":
        return x @ q
    if metric == "negative_inner_product":
        return -(x @ q)
    if metric == "l1_distance":
        return np.abs(x - q).sum(axis=1)
    raise ValueError(metric)


METRICS = ["l2_distance", "cosine_distance", "inner_product", "negative_inner_product", "l1_distance"]
ALIASES = {"array_distance": "l2_distance", "array_cosine_distance": "cosine_distance", "array_inner_product": "inner_product"}


def fetch(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetch_arrow_table()


def count(conn, table):
    return fetch(conn, f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py()


@pytest.fixture(scope="module")
def docs(server):
    table = make_table()
    with server.connect() as conn, conn.cursor() as cur:
        rows = cur.adbc_ingest("docs", table, mode="create")
    assert rows == N
    return table


def check_topk(conn, table, metric, fn, q, where=None, mask=None):
    x = vectors(table)
    ids = table.column("id").to_numpy()
    truth = true_distances(metric, x, q)
    if mask is not None:
        x_ids, truth = ids[mask], truth[mask]
    else:
        x_ids = ids
    descending = metric == "inner_product"
    order = np.argsort(-truth if descending else truth, kind="stable")[:K]
    sql = f"SELECT id, {fn}(embedding, {literal(q)}) AS d FROM docs"
    if where:
        sql += f" WHERE {where}"
    sql += f" ORDER BY d {'DESC' if descending else 'ASC'} LIMIT {K}"
    got = fetch(conn, sql).to_pydict()
    assert len(got["id"]) == K
    # Same distance at every rank, and each returned row's own distance is right.
    np.testing.assert_allclose(got["d"], truth[order], rtol=1e-4, atol=1e-4)
    by_id = dict(zip(x_ids.tolist(), truth.tolist()))
    for i, d in zip(got["id"], got["d"]):
        assert i in by_id, f"{fn}: id {i} does not satisfy the filter"
        assert abs(by_id[i] - d) <= 1e-4 * (1 + abs(d))
    return got


@pytest.mark.parametrize("fn", METRICS + list(ALIASES))
def test_topk_matches_numpy(conn, docs, fn):
    metric = ALIASES.get(fn, fn)
    rng = np.random.default_rng(hash(fn) % 2**32)
    q = rng.standard_normal(DIM).astype(np.float32)
    check_topk(conn, docs, metric, fn, q)


@pytest.mark.parametrize("fn", METRICS)
def test_filtered_topk_matches_numpy(conn, docs, fn):
    q = np.random.default_rng(7).standard_normal(DIM).astype(np.float32)
    cat = np.asarray(docs.column("category").to_pylist())
    price = docs.column("price").to_numpy()
    mask = (cat == "b") & (price < 50)
    check_topk(conn, docs, fn, fn, q, where="category = 'b' AND price < 50", mask=mask)


@pytest.mark.parametrize("fn", METRICS)
def test_range_search_matches_numpy(conn, docs, fn):
    q = np.random.default_rng(11).standard_normal(DIM).astype(np.float32)
    truth = true_distances(fn, vectors(docs), q)
    s = np.sort(truth)
    # A radius halfway between the 50th and 51st distance: no boundary ties.
    r = (s[49] + s[50]) / 2
    want = set(docs.column("id").to_numpy()[truth < r].tolist())
    got = fetch(conn, f"SELECT id FROM docs WHERE {fn}(embedding, {literal(q)}) < {float(r)!r}").column("id").to_pylist()
    assert len(got) == len(set(got)) == 50
    assert set(got) == want


def test_query_vector_as_bound_parameter(conn, docs):
    q = np.random.default_rng(3).standard_normal(DIM).astype(np.float32)
    truth = true_distances("l2_distance", vectors(docs), q)
    order = np.argsort(truth, kind="stable")[:K]
    got = fetch(conn, "SELECT id, l2_distance(embedding, $1) AS d FROM docs ORDER BY d LIMIT 10", (q.tolist(),))
    np.testing.assert_allclose(got.column("d").to_numpy(), truth[order], rtol=1e-4, atol=1e-4)
    # JDBC-style positional `?` works the same.
    got_q = fetch(conn, "SELECT id, l2_distance(embedding, ?) AS d FROM docs WHERE id >= ? ORDER BY d LIMIT 10", (q.tolist(), 0))
    assert got_q.column("id").to_pylist() == got.column("id").to_pylist()
    with pytest.raises(adbc_driver_manager.Error, match="different dimensions \\(64 and 3\\)"):
        fetch(conn, "SELECT l2_distance(embedding, $1) FROM docs", ([1.0, 2.0, 3.0],))
    # Scalar parameters too.
    n = fetch(conn, "SELECT count(*) AS n FROM docs WHERE category = $1 AND price < $2", ("b", 50.0))
    cat = np.asarray(docs.column("category").to_pylist())
    assert n.column("n")[0].as_py() == int(((cat == "b") & (docs.column("price").to_numpy() < 50)).sum())


def test_pandas_and_polars(conn, docs):
    q = np.random.default_rng(5).standard_normal(DIM).astype(np.float32)
    sql = (
        f"SELECT id, category, price, l2_distance(embedding, {literal(q)}) AS d "
        f"FROM docs WHERE category = 'b' AND price < 50 ORDER BY d LIMIT 10"
    )
    df = pd.read_sql(sql, conn)
    assert list(df.columns) == ["id", "category", "price", "d"]
    assert len(df) == K and (df["category"] == "b").all() and (df["price"] < 50).all()
    assert df["d"].is_monotonic_increasing
    pdf = pl.read_database(sql, connection=conn)
    assert pdf.shape == (K, 4)
    assert pdf["id"].to_list() == df["id"].tolist()
    # Aggregates and vectors come through too.
    agg = pl.read_database("SELECT category, count(*) AS n FROM docs GROUP BY category ORDER BY category", connection=conn)
    assert agg["n"].sum() == N
    vec = pd.read_sql("SELECT embedding FROM docs WHERE id = 42", conn)
    np.testing.assert_array_equal(np.asarray(vec["embedding"][0], dtype=np.float32), vectors(docs)[42].astype(np.float32))


def test_catalog_browsing(conn, docs):
    schema = conn.adbc_get_table_schema("docs")
    assert schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    assert schema.field("id").type == pa.int64()
    assert schema.field("category").type == pa.string()
    objects = conn.adbc_get_objects().read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}
    assert "quiver" in catalogs
    schemas = {s["db_schema_name"]: s for s in catalogs["quiver"]["catalog_db_schemas"]}
    tables = {t["table_name"] for t in schemas["public"]["db_schema_tables"]}
    assert "docs" in tables


def test_sql_ddl_and_dml(conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id BIGINT NOT NULL, name VARCHAR, v FLOAT[3], PRIMARY KEY (id))")
        cur.execute("INSERT INTO t VALUES (1, 'x', [1.0, 2.0, 3.0]), (2, 'y', [0.0, 0.0, 1.0])")
        cur.execute("SELECT id, name, l2_distance(v, [1.0, 2.0, 3.0]) AS d FROM t ORDER BY d")
        rows = cur.fetchall()
        assert rows[0] == (1, "x", 0.0)
        assert rows[1][0] == 2
        # Many parameter rows at once (a prepared INSERT).
        cur.executemany("INSERT INTO t VALUES (?, ?, ?)", [(3, "z", [0.0, 1.0, 0.0]), (4, "w", [1.0, 1.0, 1.0])])
        cur.execute("SELECT count(*) FROM t")
        assert cur.fetchone() == (4,)
        cur.execute("DROP TABLE t")
        with pytest.raises(adbc_driver_manager.Error, match="not found"):
            cur.execute("SELECT * FROM t")


def test_dml_row_counts(conn):
    with conn.cursor() as cur:
        stmt = cur.adbc_statement
        # ADBC's statement-level execute_update: CommandStatementUpdate.
        stmt.set_sql_query("CREATE TABLE counts (id BIGINT NOT NULL, v FLOAT[2], PRIMARY KEY (id))")
        assert stmt.execute_update() == 0
        stmt.set_sql_query("INSERT INTO counts VALUES (1, [1, 2]), (2, [3, 4]), (3, [5, 6])")
        assert stmt.execute_update() == 3
        stmt.set_sql_query("DELETE FROM counts WHERE id >= 2")
        assert stmt.execute_update() == 2
        # cursor.execute sends DML down the query path: the count comes back as a row.
        cur.execute("INSERT INTO counts VALUES (7, [0, 0]), (8, [1, 1])")
        assert cur.fetchall() == [(2,)]
        # A prepared update with many parameter rows (executemany).
        cur.executemany("INSERT INTO counts VALUES (?, ?)", [(10, [1.0, 1.0]), (11, [2.0, 2.0]), (12, [3.0, 3.0])])
        assert cur.rowcount == 3
        cur.executemany("DELETE FROM counts WHERE id = $1", [(10,), (11,), (99,)])
        assert cur.rowcount == 2
        cur.execute("SELECT id FROM counts ORDER BY id")
        assert [r[0] for r in cur.fetchall()] == [1, 7, 8, 12]
        stmt.set_sql_query("DROP TABLE counts")
        assert stmt.execute_update() == 0


def test_a_cursor_running_the_same_sql_again_reads_the_data_as_it_is_then(conn):
    """ADBC keeps the prepared statement when a cursor runs the same SQL
    again; each run reads the data as it is at that run."""
    with conn.cursor() as cur, conn.cursor() as writer:
        cur.execute("CREATE TABLE again (id BIGINT NOT NULL, v FLOAT[2], PRIMARY KEY (id))")
        writer.execute("INSERT INTO again VALUES (1, [1, 1])")
        query = "SELECT count(*) FROM again"
        cur.execute(query)
        assert cur.fetchone() == (1,)
        writer.execute("INSERT INTO again VALUES (2, [2, 2]), (3, [3, 3])")
        cur.execute(query)
        assert cur.fetchone() == (3,)
        writer.execute("DELETE FROM again WHERE id = 1")
        cur.execute(query)
        assert cur.fetchone() == (2,)
        cur.execute("DROP TABLE again")


def test_ingest_modes(conn):
    small = make_table(n=100, seed=1)
    more = make_table(n=50, seed=2, id_offset=100)
    with conn.cursor() as cur:
        assert cur.adbc_ingest("modes", small, mode="create") == 100
        with pytest.raises(adbc_driver_manager.Error, match="already exists"):
            cur.adbc_ingest("modes", small, mode="create")
        assert cur.adbc_ingest("modes", more, mode="append") == 50
        assert count(conn, "modes") == 150
        # The same keys again replace the rows (the primary key is unique).
        assert cur.adbc_ingest("modes", more, mode="create_append") == 50
        assert count(conn, "modes") == 150
        assert cur.adbc_ingest("modes", more, mode="replace") == 50
        assert count(conn, "modes") == 50
        with pytest.raises(adbc_driver_manager.Error, match="does not exist"):
            cur.adbc_ingest("no_such_collection", more, mode="append")
        assert cur.adbc_ingest("fresh", more, mode="create_append") == 50
        # A table without an `id` column and no declared key gets a
        # generated one: its first column is an ordinary column, and the
        # same rows again are rows more (tests/python/test_keys.py).
        keyed = pa.table({"key": ["a", "b"], "x": [1, 2]})
        assert cur.adbc_ingest("keyed", keyed, mode="create") == 2
        assert cur.adbc_ingest("keyed", keyed, mode="append") == 2
        assert count(conn, "keyed") == 4
    assert conn.adbc_get_table_schema("keyed").field("key").nullable is True


def test_bad_input_is_rejected_and_nothing_changes(server, conn, docs):
    before = count(conn, "docs")
    wrong_dim = make_table(n=10, dim=DIM + 1, id_offset=N)
    null_key = make_table(n=10, id_offset=N).set_column(0, "id", pa.array([None] * 10, pa.int64()))
    bad_type = make_table(n=10, id_offset=N).set_column(2, "price", pa.array(["cheap"] * 10))
    unknown_col = make_table(n=10, id_offset=N).append_column("colour", pa.array(["red"] * 10))
    cases = [
        (wrong_dim, "dimension 64.*dimension 65"),
        (null_key, "primary key column 'id' of collection 'docs' is null"),
        (bad_type, "column 'price' of collection 'docs' has type Float64, but the input has Utf8"),
        (unknown_col, "unknown column 'colour'"),
    ]
    with conn.cursor() as cur:
        for table, message in cases:
            with pytest.raises(adbc_driver_manager.Error, match=message):
                cur.adbc_ingest("docs", table, mode="append")
    with conn.cursor() as cur:
        for sql, message in [
            ("SELEKT 1", "(?i)sql parser error|expected"),
            ("SELECT * FROM nope", "nope"),
            ("SELECT colour FROM docs", "colour"),
            ("SELECT l2_distance(embedding, [1.0, 2.0]) FROM docs", "different dimensions \\(64 and 2\\)"),
            ("COPY (SELECT 1) TO '/tmp/quiver-e2e-copy.csv'", "COPY is not allowed"),
            ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", "CREATE EXTERNAL TABLE is not allowed"),
            ("INSERT INTO docs (id) VALUES (NULL)", "null"),
        ]:
            with pytest.raises(adbc_driver_manager.Error, match=message):
                cur.execute(sql)
                cur.fetchall()
    assert count(conn, "docs") == before
    assert server.alive()


def test_data_survives_restart_and_kill(fresh_server):
    table = make_table(n=2_000, seed=9)
    fresh_server.start()
    q = literal(vectors(table)[17])
    sql = f"SELECT id, l2_distance(embedding, {q}) AS d FROM restart ORDER BY d LIMIT 5"
    with fresh_server.connect() as conn, conn.cursor() as cur:
        cur.adbc_ingest("restart", table, mode="create")
        cur.execute("CREATE TABLE notes (id BIGINT NOT NULL, note VARCHAR)")
        cur.execute("INSERT INTO notes VALUES (1, 'kept')")
        before = fetch(conn, sql)
    assert before.column("id")[0].as_py() == 17
    # Clean shutdown.
    assert fresh_server.stop(signal.SIGTERM) == 0
    fresh_server.start()
    with fresh_server.connect() as conn, conn.cursor() as cur:
        assert fetch(conn, sql) == before
        cur.adbc_ingest("restart", make_table(n=10, seed=10, id_offset=5_000), mode="append")
        cur.execute("INSERT INTO notes VALUES (2, 'acked')")
    # kill -9 right after the acknowledgements: both writes are there.
    fresh_server.stop(signal.SIGKILL)
    fresh_server.start()
    with fresh_server.connect() as conn:
        assert count(conn, "restart") == 2_010
        assert fetch(conn, "SELECT note FROM notes ORDER BY id").column("note").to_pylist() == ["kept", "acked"]


@pytest.mark.parametrize("element", ["float16", "int8"])
def test_float16_and_int8_vectors(conn, element):
    """Milvus's FLOAT16_VECTOR and INT8_VECTOR: ingested from pyarrow,
    stored, read back with their type, and searched with every metric; the
    query vector takes the column's element type (rounded to float16,
    integers for int8), and distances match numpy on the stored values."""
    rng = np.random.default_rng(21)
    n, dim = 3000, 24
    if element == "float16":
        x = rng.standard_normal((n, dim)).astype(np.float16)
        q = rng.standard_normal(dim).astype(np.float16)
        values, item = pa.array(x.reshape(-1), type=pa.float16()), pa.float16()
    else:
        x = rng.integers(-128, 128, (n, dim)).astype(np.int8)
        q = rng.integers(-128, 128, dim).astype(np.int8)
        values, item = pa.array(x.reshape(-1)), pa.int8()
    name = f"v_{element}"
    table = pa.table({
        "id": pa.array(np.arange(n, dtype=np.int64)),
        "half": pa.array(np.arange(n) % 2 == 0),
        "v": pa.FixedSizeListArray.from_arrays(values, dim),
    })
    with conn.cursor() as cur:
        cur.adbc_ingest(name, table, mode="replace")
    back = fetch(conn, f"SELECT id, v FROM {name} ORDER BY id")
    assert back.schema.field("v").type == pa.list_(item, dim)
    assert back.column("v").combine_chunks().values.to_numpy().tolist() == x.reshape(-1).tolist()
    xf = x.astype(np.float64)
    for metric in METRICS:
        truth = true_distances(metric, xf, q.astype(np.float64))
        for where, mask in [("", np.ones(n, bool)), (" WHERE half", np.arange(n) % 2 == 0)]:
            descending = metric == "inner_product"
            got = fetch(conn, f"SELECT id, {metric}(v, {literal(q)}) AS d FROM {name}{where} "
                              f"ORDER BY d {'DESC' if descending else 'ASC'} LIMIT {K}").to_pydict()
            t = np.where(mask, -truth if descending else truth, np.inf)
            # Ties break by key: order by (distance, id) in numpy too.
            order = np.lexsort((np.arange(n), t))[:K]
            np.testing.assert_allclose(got["d"], truth[order], rtol=1e-5, atol=1e-5)
            assert all(mask[i] for i in got["id"])
            for i, d in zip(got["id"], got["d"]):
                assert abs(truth[i] - d) <= 1e-5 * max(1.0, abs(d))
