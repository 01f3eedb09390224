"""A 1M x 128-d table (~520 MB) ingested in one adbc_ingest call.

gRPC's default message limit is 4 MiB; the server accepts record-batch
messages up to --max-request-bytes (1 GiB) and cuts the rows into segments
itself. The ADBC Go driver sends each record batch as one message and, by
default, refuses to send messages over 16 MiB, so a single 520 MB batch needs
either chunking on the client (`table.to_reader(max_chunksize=...)`, still
one call) or a larger client limit; both are exercised here.
"""

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import numpy as np
import pyarrow as pa

ROWS = 1_000_000
DIM = 128


def make_table():
    rng = np.random.default_rng(42)
    emb = rng.standard_normal((ROWS, DIM), dtype=np.float32)
    table = pa.table(
        {
            "id": pa.array(np.arange(ROWS, dtype=np.int64)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM),
        }
    )
    assert table.nbytes > 100 * 4 * 1024 * 1024  # far above the 4 MiB gRPC default
    return table, emb


def check(cur, name, emb):
    cur.execute(f"SELECT count(*), min(id), max(id) FROM {name}")
    assert cur.fetchone() == (ROWS, 0, ROWS - 1)
    target = 123_456
    q = "[" + ", ".join(f"{float(x):.9g}" for x in emb[target]) + "]"
    cur.execute(f"SELECT id, l2_distance(embedding, {q}) AS d FROM {name} ORDER BY d LIMIT 3")
    rows = cur.fetchall()
    assert rows[0][0] == target and rows[0][1] == 0.0
    # The stored vector comes back bit for bit.
    cur.execute(f"SELECT embedding FROM {name} WHERE id = {target}")
    got = cur.fetch_arrow_table().column("embedding").combine_chunks().values.to_numpy()
    np.testing.assert_array_equal(got, emb[target])


def test_one_million_vectors_in_one_call_default_client(server):
    table, emb = make_table()
    with server.connect() as conn, conn.cursor() as cur:
        # One call; the reader hands the driver 8 MiB batches.
        assert cur.adbc_ingest("big", table.to_reader(max_chunksize=16_384), mode="create") == ROWS
        check(cur, "big", emb)


def test_one_520mb_record_batch(server):
    table, emb = make_table()
    table = table.combine_chunks()
    assert len(table.to_batches()) == 1
    limit = {adbc_driver_flightsql.DatabaseOptions.WITH_MAX_MSG_SIZE.value: str(1 << 30)}
    with flightsql.connect(server.uri, db_kwargs=limit, autocommit=True) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("big_one_batch", table, mode="create") == ROWS
        check(cur, "big_one_batch", emb)
