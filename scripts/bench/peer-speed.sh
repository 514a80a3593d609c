#!/usr/bin/env bash
# tripletgen against sentence-transformers on the same BEIR folder, same machine, same threads, in
# one run (issue #16):
#
#   scripts/bench/peer-speed.sh [BEIR_DIR | 10k | 100k] [--split test] [--negatives 5] [--model-dir DIR] [--rounds 2]
#
# For each round, alternating the two tools:
#   embedding alone  sentence-transformers fp32 `encode` (batch 32, max_seq_length 256) of every
#                    passage (title + text) and query, timed inside Python after a warm-up batch;
#                    tripletgen's `embed_documents.seconds + embed_queries.seconds` from report.json
#                    of a `mine` with an empty workspace;
#   whole process    `python st_mine.py` (mine_hard_negatives, relative_margin 0.05, range_max 50,
#                    top sampling) against `tripletgen mine` (defaults), wall clock and peak RSS
#                    (GNU time's maximum resident set size) of each process.
# Prints the seconds and the ratios (peer / tripletgen: above 1 means tripletgen is faster).
# BEIR_DIR defaults to fixtures/nq-open; `10k` and `100k` are built from the fixtures by
# scripts/bench/corpora.py (cached). --model-dir runs tripletgen with `[model] dir = DIR` instead of
# the default model. The Python side is the downstream benchmark's pinned venv
# (scripts/downstream/run.sh --venv-only; torch + sentence-transformers).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${TRIPLETGEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tripletgen}"
BEIR="$ROOT/fixtures/nq-open"
SPLIT=test
NEG=5
MODEL_DIR=""
ROUNDS=2
THREADS=2

die() { printf '[peer-speed] error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=common.sh
source "$HERE/common.sh"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --split) SPLIT="$2"; shift 2 ;;
        --negatives) NEG="$2"; shift 2 ;;
        --model-dir) MODEL_DIR="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown argument $1 (see --help)" ;;
        10k | 100k) BEIR="$(bench_corpus "$1")"; SPLIT=test; shift ;;
        *) BEIR="$(bench_corpus "$1")"; shift ;;
    esac
done
[[ -f "$BEIR/corpus.jsonl" ]] || die "$BEIR has no corpus.jsonl"

VENV="$("$ROOT/scripts/downstream/run.sh" --venv-only)"
PY="$VENV/bin/python"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
BIN="$(bench_binary)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
CFG="$WORK/tg.toml"
printf '[embed]\nthreads = %s\n' "$THREADS" > "$CFG"
[[ -n "$MODEL_DIR" ]] && printf '[model]\ndir = "%s"\n' "$MODEL_DIR" >> "$CFG"

cat > "$WORK/st_embed.py" <<'EOF'
import json, sys, time, torch
sys.path.insert(0, sys.argv[2])
torch.set_num_threads(int(sys.argv[3]))
from train import load_model
beir = sys.argv[1]
m = load_model(256)
docs = [json.loads(l) for l in open(f"{beir}/corpus.jsonl", encoding="utf-8")]
texts = [(d.get("title", "") + " " + d["text"]).strip() for d in docs]
queries = [json.loads(l)["text"] for l in open(f"{beir}/queries.jsonl", encoding="utf-8")]
m.encode(texts[:32], batch_size=32)
t = time.time()
m.encode(texts, batch_size=32)
m.encode(queries, batch_size=32)
print(f"{time.time() - t:.3f}")
EOF

now() { date +%s.%N; }
declare -a ST_E TG_E ST_W TG_W ST_M TG_M
TIME=/usr/bin/time
[[ -x "$TIME" ]] || die "GNU time (/usr/bin/time, Debian package time) is needed for the peak RSS"
for r in $(seq 1 "$ROUNDS"); do
    ST_E+=("$("$PY" "$WORK/st_embed.py" "$BEIR" "$ROOT/scripts/downstream" "$THREADS" 2>/dev/null)")
    rm -rf "$WORK/ws" "$WORK/out"
    t0=$(now)
    "$TIME" -f %M -o "$WORK/tg.rss" "$BIN" -q mine "$BEIR" --split "$SPLIT" --num-negatives "$NEG" --config "$CFG" --out "$WORK/out" \
        --workspace "$WORK/ws" --format triplet --no-progress
    t1=$(now)
    TG_W+=("$(python3 -c "print(round($t1 - $t0, 3))")")
    TG_M+=("$(tail -1 "$WORK/tg.rss")")
    TG_E+=("$(python3 -c "import json;r=json.load(open('$WORK/out/report.json'));print(round(r['embed_documents']['seconds']+r['embed_queries']['seconds'],3))")")
    t0=$(now)
    "$TIME" -f %M -o "$WORK/st.rss" "$PY" "$ROOT/scripts/downstream/st_mine.py" "$BEIR" "$WORK/st.parquet" --split "$SPLIT" \
        --num-negatives "$NEG" --threads "$THREADS" >/dev/null 2>&1 || die "st_mine.py failed"
    t1=$(now)
    ST_W+=("$(python3 -c "print(round($t1 - $t0, 3))")")
    ST_M+=("$(tail -1 "$WORK/st.rss")")
done

python3 - "$BEIR" "${MODEL_DIR:-default (fetch-models)}" "${ST_E[*]}" "${TG_E[*]}" "${ST_W[*]}" "${TG_W[*]}" "${ST_M[*]}" "${TG_M[*]}" <<'EOF'
import statistics, sys
beir, model = sys.argv[1], sys.argv[2]
se, te, sw, tw, sm, tm = ([float(x) for x in a.split()] for a in sys.argv[3:9])
med = statistics.median
print(f"peer speed on {beir} (tripletgen model: {model}), {len(se)} rounds, medians")
print(f"  embedding alone  sentence-transformers {med(se):8.2f} s   tripletgen {med(te):8.2f} s   ratio {med(se)/med(te):5.2f}x   (rounds: {se} / {te})")
print(f"  whole process    sentence-transformers {med(sw):8.2f} s   tripletgen {med(tw):8.2f} s   ratio {med(sw)/med(tw):5.2f}x   (rounds: {[round(x,1) for x in sw]} / {[round(x,1) for x in tw]})")
print(f"  peak RSS         sentence-transformers {med(sm)/1024:8.0f} MiB tripletgen {med(tm)/1024:8.0f} MiB ratio {med(sm)/med(tm):5.2f}x")
EOF
