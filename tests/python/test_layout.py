"""Segment files stay readable by other tools: group 0 is plain Parquet, and a
vector group is FixedSizeBinary(4*d) tagged `quiver.vector`, which numpy turns
back into float32 vectors (as docs/storage.md shows)."""

import json
import pathlib
import subprocess

import numpy as np
import pyarrow.parquet as pq

from conftest import quiver_bin
from test_end_to_end import make_table, vectors


def test_vector_files_are_fixed_size_binary_readable_with_pyarrow(fresh_server):
    fresh_server.start()
    table = make_table(n=3_000, seed=11)
    with fresh_server.connect() as conn, conn.cursor() as cur:
        cur.adbc_ingest("lay", table, mode="create")
    assert fresh_server.stop() == 0
    out = subprocess.run(
        [quiver_bin(), "inspect", "--data-dir", str(fresh_server.data_dir), "lay", "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    info = json.loads(out.stdout)
    root = pathlib.Path(fresh_server.data_dir) / "lay"
    ids, vecs = [], []
    for seg in info["segments"]:
        files = {f["group"]: f for f in seg["files"]}
        scalars = pq.read_table(root / files[0]["path"])
        stored = pq.read_table(root / files[1]["path"])
        field = stored.schema.field("embedding")
        assert str(field.type) == "fixed_size_binary[256]"
        assert field.metadata[b"quiver.vector"] == b"float32[64]"
        col = stored.column("embedding").combine_chunks()
        ids.append(scalars.column("id").to_numpy())
        vecs.append(np.frombuffer(col.buffers()[1], dtype="<f4", count=len(col) * 64).reshape(-1, 64))
    ids = np.concatenate(ids)
    got = np.concatenate(vecs)[np.argsort(ids)]
    np.testing.assert_array_equal(got, vectors(table))
