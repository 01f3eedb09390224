"""Writing and reading quiver from pandas and polars through ADBC.

- pandas `DataFrame.to_sql` and polars `DataFrame.write_database` create a
  collection (the `id` column is the primary key) and upsert into it;
- a bound parameter carries the query vector; polars reads the result in
  batches.

Start a server first (`cargo run --release -- serve`), then:
    python examples/dataframes.py            # or QUIVER_URI=grpc://host:port
"""

import os

import adbc_driver_flightsql.dbapi as flightsql
import numpy as np
import pandas as pd
import polars as pl

URI = os.environ.get("QUIVER_URI", "grpc://127.0.0.1:50051")
rng = np.random.default_rng(7)

# Scalar metadata from pandas: a new collection (replace), then an upsert.
products = pd.DataFrame(
    {"id": np.arange(100, dtype=np.int64), "brand": rng.choice(["acme", "globex"], 100), "price": rng.uniform(1, 99, 100)}
)
with flightsql.connect(URI, autocommit=True) as conn:
    products.to_sql("df_products", conn, if_exists="replace", index=False)
    products.head(10).assign(price=0.0).to_sql("df_products", conn, if_exists="append", index=False)

# Vectors from polars: a fixed-size array column becomes FLOAT[d].
dim = 16
vectors = pl.DataFrame(
    {
        "id": np.arange(1000, dtype=np.int64),
        "product_id": rng.integers(0, 100, 1000),
        "embedding": rng.standard_normal((1000, dim), dtype=np.float32),
    },
    schema_overrides={"embedding": pl.Array(pl.Float32, dim)},
)
with flightsql.connect(URI, autocommit=True) as conn:
    vectors.write_database("df_vectors", connection=conn, engine="adbc", if_table_exists="replace")

query = vectors["embedding"][3].to_list()
sql = """
    SELECT v.id, p.brand, p.price, l2_distance(v.embedding, $1) AS distance
    FROM (SELECT id, product_id, embedding FROM df_vectors ORDER BY l2_distance(embedding, $1) LIMIT 5) v
    JOIN df_products p ON p.id = v.product_id
    ORDER BY distance
"""
with flightsql.connect(URI, autocommit=True) as conn, conn.cursor() as cur:
    cur.execute(sql, (query,))
    nearest = cur.fetch_arrow_table()
    print(nearest.to_pandas())
    assert nearest["id"][0].as_py() == 3

    cur.execute("SELECT count(*), sum(CASE WHEN price = 0 THEN 1 ELSE 0 END) FROM df_products")
    print("products, of which upserted with price 0:", cur.fetchone())

    for batch in pl.read_database("SELECT id, product_id FROM df_vectors", connection=conn, iter_batches=True, batch_size=256):
        print("batch of", batch.height, "rows")
