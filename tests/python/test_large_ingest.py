"""A 1M x 128-d table in one adbc_ingest call, with default client settings.

Far above gRPC's default 4 MiB message size: the server accepts large
record-batch messages and splits the rows into segments itself.
"""

import numpy as np
import pyarrow as pa

ROWS = 1_000_000
DIM = 128


def test_one_million_vectors_in_one_call(server):
    rng = np.random.default_rng(42)
    emb = rng.standard_normal((ROWS, DIM), dtype=np.float32)
    table = pa.table(
        {
            "id": pa.array(np.arange(ROWS, dtype=np.int64)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM),
        }
    )
    assert table.nbytes > 500 * 1024 * 1024
    with server.connect() as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("big", table, mode="create") == ROWS
        cur.execute("SELECT count(*), min(id), max(id) FROM big")
        assert cur.fetchone() == (ROWS, 0, ROWS - 1)
        target = 123_456
        q = "[" + ", ".join(f"{float(x):.9g}" for x in emb[target]) + "]"
        cur.execute(f"SELECT id, l2_distance(embedding, {q}) AS d FROM big ORDER BY d LIMIT 3")
        rows = cur.fetchall()
        assert rows[0][0] == target and rows[0][1] == 0.0
        # The stored vector comes back bit for bit.
        cur.execute(f"SELECT embedding FROM big WHERE id = {target}")
        got = cur.fetch_arrow_table().column("embedding").combine_chunks().values.to_numpy()
        np.testing.assert_array_equal(got, emb[target])
