"""pandas and polars writing into and reading out of quiver through the
ADBC connection: DataFrame.to_sql, polars write_database(engine="adbc"),
read_database with iter_batches, the vectors intact."""

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

# The tests on the module server run on a local directory and on S3 (SeaweedFS).
BACKENDS = ("local", "s3")


def _frame(n, offset=0, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(offset, offset + n, dtype=np.int64),
            "label": rng.choice(["cat", "dog"], n),
            "score": rng.random(n),
        }
    )


def _count(conn, table):
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


def test_pandas_to_sql(conn):
    df = _frame(500)
    assert df.to_sql("pd_rows", conn, index=False) == 500
    assert _count(conn, "pd_rows") == 500
    with pytest.raises(ValueError, match="already exists"):
        df.to_sql("pd_rows", conn, index=False)
    df.iloc[:100].assign(score=-1.0).to_sql("pd_rows", conn, index=False, if_exists="append")
    # Same keys: upserted, not duplicated.
    back = pd.read_sql("SELECT id, label, score FROM pd_rows ORDER BY id", conn)
    assert len(back) == 500 and (back["score"].iloc[:100] == -1.0).all()
    _frame(7, seed=3).to_sql("pd_rows", conn, index=False, if_exists="replace")
    assert _count(conn, "pd_rows") == 7


def test_polars_write_and_read_in_batches(conn):
    rng = np.random.default_rng(2)
    emb = rng.standard_normal((3000, 8)).astype(np.float32)
    df = pl.DataFrame(
        {
            "id": np.arange(3000, dtype=np.int64),
            "group": rng.integers(0, 5, 3000).astype(np.int32),
            "embedding": pl.Series(emb.tolist(), dtype=pl.Array(pl.Float32, 8)),
        }
    )
    assert df.write_database("pl_rows", conn, engine="adbc") == 3000
    df.head(10).write_database("pl_rows", conn, engine="adbc", if_table_exists="append")
    assert _count(conn, "pl_rows") == 3000
    batches = list(
        pl.read_database(
            "SELECT id, \"group\", embedding FROM pl_rows ORDER BY id",
            connection=conn,
            iter_batches=True,
            batch_size=1000,
        )
    )
    assert sum(b.height for b in batches) == 3000
    back = pl.concat(batches)
    assert back["id"].to_list() == list(range(3000))
    np.testing.assert_array_equal(back["embedding"].to_numpy(), emb)
    # A filtered top-k with `?` placeholders: a scalar and the query vector.
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM pl_rows WHERE \"group\" = ? ORDER BY l2_distance(embedding, ?) LIMIT 3",
            (int(df["group"][7]), emb[7].tolist()),
        )
        assert cur.fetchall()[0] == (7,)
    df.head(5).write_database("pl_rows", conn, engine="adbc", if_table_exists="replace")
    assert _count(conn, "pl_rows") == 5
