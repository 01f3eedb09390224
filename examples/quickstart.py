"""quiver quick start: ingest vectors from pyarrow, search from pandas and polars.

Start a server first (`cargo run --release -- serve`), then:
    python examples/quickstart.py            # or QUIVER_URI=grpc://host:port
"""

import os

import adbc_driver_flightsql.dbapi as flightsql
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

URI = os.environ.get("QUIVER_URI", "grpc://127.0.0.1:50051")
N, DIM = 10_000, 64

rng = np.random.default_rng(0)
embeddings = rng.standard_normal((N, DIM), dtype=np.float32)
table = pa.table(
    {
        "id": np.arange(N, dtype=np.int64),
        "category": rng.choice(["a", "b", "c"], N),
        "price": rng.uniform(0, 100, N),
        # A vector column is any FixedSizeList<float32, d> column.
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), DIM),
    }
)

with flightsql.connect(URI, autocommit=True) as conn:
    with conn.cursor() as cur:
        # mode: create | append | replace | create_append
        rows = cur.adbc_ingest("quickstart_docs", table, mode="replace")
        print(f"ingested {rows} rows")

    query = embeddings[42]
    vec = "[" + ", ".join(f"{x:.9g}" for x in query) + "]"
    sql = f"""
        SELECT id, category, price, l2_distance(embedding, {vec}) AS distance
        FROM quickstart_docs
        WHERE category = 'b' AND price < 50
        ORDER BY distance
        LIMIT 5
    """
    print(pd.read_sql(sql, conn))
    print(pl.read_database(sql, connection=conn))

    # The query vector can also be a bound parameter.
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, cosine_distance(embedding, $1) AS d FROM quickstart_docs ORDER BY d LIMIT 3",
            (query.tolist(),),
        )
        best = cur.fetchall()
        print(best)
        assert best[0][0] == 42
