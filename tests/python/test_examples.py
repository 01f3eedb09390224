"""The Python examples run as documented against a real server."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "script, expect",
    [("quickstart.py", "ingested 10000 rows"), ("dataframes.py", "products, of which upserted with price 0: (100, 10)")],
)
def test_example(server, script, expect):
    env = dict(os.environ, QUIVER_URI=server.uri)
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert expect in out.stdout, out.stdout
