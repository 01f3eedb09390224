"""The in-process references of benches/topk.rs, timed in the same run:
faiss IndexFlatL2 (an IDSelectorBitmap for filters, its bitmap built per
query from the filter, as a user would) and numpy, on the vectors the bench
generated. benches/topk.rs starts this script itself; it is not meant to be
run by hand.

    python benches/flat_reference.py DIR ROWS DIM K LIMITS

DIR holds vectors.f32 (ROWS x DIM little-endian float32), bucket.i32 (ROWS)
and queries.f32 (n x DIM); LIMITS is a JSON list of bucket limits (null: no
filter; n: `bucket < n`). Prints one JSON list: per limit, the p50 of faiss
and of numpy in ms and faiss's ids for the first query (for the bench to
check that everyone answers the same).
"""

import json
import pathlib
import statistics
import sys
import time

import faiss
import numpy as np


def searchers(emb, bucket, k):
    """The top-k searches `(faiss_search, numpy_search)` over the rows of
    `emb`, each called as `fn(query, limit)`: ids of the k nearest rows
    (squared L2) among those with `bucket < limit` (all if limit is None).
    benches/search.py uses them too."""
    index = faiss.IndexFlatL2(emb.shape[1])
    index.add(emb)
    norms = (emb * emb).sum(1)

    def faiss_search(q, limit):
        if limit is None:
            return index.search(q[None, :], k)[1][0]
        mask = np.packbits(bucket < limit, bitorder="little")
        params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(mask))
        return index.search(q[None, :], k, params=params)[1][0]

    def numpy_search(q, limit):
        d = norms - 2.0 * (emb @ q)
        if limit is not None:
            d = np.where(bucket < limit, d, np.inf)
        top = np.argpartition(d, k)[:k]
        return top[np.argsort(d[top])]

    return faiss_search, numpy_search


def main():
    folder = pathlib.Path(sys.argv[1])
    rows, dim, k = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    limits = json.loads(sys.argv[5])
    emb = np.fromfile(folder / "vectors.f32", dtype="<f4").reshape(rows, dim)
    bucket = np.fromfile(folder / "bucket.i32", dtype="<i4")
    queries = np.fromfile(folder / "queries.f32", dtype="<f4").reshape(-1, dim)
    faiss_search, numpy_search = searchers(emb, bucket, k)

    def p50(fn, limit):
        fn(queries[0], limit)  # warm
        samples = []
        for q in queries:
            t = time.perf_counter()
            fn(q, limit)
            samples.append(time.perf_counter() - t)
        return statistics.median(samples) * 1e3

    out = []
    for limit in limits:
        out.append(
            {
                "limit": limit,
                "faiss_ms": p50(faiss_search, limit),
                "numpy_ms": p50(numpy_search, limit),
                "faiss_ids": [int(i) for i in faiss_search(queries[0], limit)],
            }
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
