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

echo "==> cargo test (unit tests, sql/*.slt, integration tests)"
cargo test --locked --features failpoints

echo "==> pytest (real binary, ADBC, pandas, polars)"
QUIVER_BIN="$target/debug/quiver" .venv/bin/python -m pytest tests/python -q -p no:cacheprovider "$@"
