#!/usr/bin/env bash
# The whole test suite: Rust unit tests, the integration binary (SQL logic
# scripts under sql/), and the Python end-to-end tests that drive the real
# quiver binary with the ADBC Flight SQL driver, pandas and polars.
# Sets up its own Python venv (.venv, from tests/python/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TARGET_DIR="$target"

python="${PYTHON:-python3}"
req=tests/python/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> creating .venv from $req"
    rm -rf .venv
    "$python" -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
fi

# One build for the binary and the tests: `cargo build --bins` alone would
# resolve dependency features without the dev-dependencies and compile the
# whole dependency tree a second time.
echo "==> cargo build (binary and tests)"
cargo test --locked --features failpoints --no-run

# The storage tests run on a local directory and on a real S3 server:
# SeaweedFS on loopback, started here and stopped when this script ends.
echo "==> starting SeaweedFS (S3 on 127.0.0.1) for the Rust storage tests"
s3_dir=$(mktemp -d)
coproc SEAWEED { exec .venv/bin/python tests/python/seaweed.py "$s3_dir"; }
seaweed_pid=$SEAWEED_PID
cleanup() {
    kill "$seaweed_pid" 2>/dev/null || true
    wait "$seaweed_pid" 2>/dev/null || true
    rm -rf "$s3_dir"
}
trap cleanup EXIT
s3_env=()
while read -r line <&"${SEAWEED[0]}"; do
    s3_env+=("${line#export }")
    case "$line" in *QUIVER_TEST_S3=*) break ;; esac
done
case "${s3_env[*]}" in
    *QUIVER_TEST_S3=*) ;;
    *) echo "SeaweedFS did not start" >&2; exit 1 ;;
esac

echo "==> cargo test (unit tests, sql/*.slt, integration tests; storage tests also on S3)"
env "${s3_env[@]}" cargo test --locked --features failpoints
cleanup
trap - EXIT

echo "==> pytest (real binary, ADBC, pandas, polars)"
QUIVER_BIN="$target/debug/quiver" .venv/bin/python -m pytest tests/python -q -p no:cacheprovider "$@"
