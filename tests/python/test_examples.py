"""The Python example runs as documented against a real server."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_quickstart_example(server):
    env = dict(os.environ, QUIVER_URI=server.uri)
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "ingested 10000 rows" in out.stdout
