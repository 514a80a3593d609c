#!/usr/bin/env bash
# Peak memory of a whole `tripletgen mine` against what the data itself takes (issue #16):
#
#   scripts/bench/memory.sh [100k | 10k | BEIR_DIR] [--negatives 5]
#
# Runs `tripletgen mine` (release build, default config, 2 threads, empty workspace) on the BEIR
# folder (`100k`/`10k` are built from the fixtures by scripts/bench/corpora.py and cached) under
# GNU time, then once more on fixtures/quickstart (310 documents) for the fixed cost (binary, ONNX
# Runtime, the model and its arena). Prints the peak RSS of both, the peak of every stage from
# report.json (`memory`), and the data model:
#   texts    bytes of every document (title + text) and query
#   vectors  (documents + queries) x dim x 4 bytes
#   graph    hnsw_rs while building: documents x (2M + M/(M-1)) links x 56 bytes (BENCHMARKS.md,
#            Index); after the build tripletgen keeps a flat graph of 4-byte ids
# and the ratio (peak - fixed cost) / (texts + vectors + graph); the target is at most 1.5.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${TRIPLETGEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tripletgen}"
BEIR=100k
NEG=5
die() { printf '[memory] error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=common.sh
source "$HERE/common.sh"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --negatives) NEG="$2"; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown argument $1 (see --help)" ;;
        *) BEIR="$1"; shift ;;
    esac
done
BEIR="$(bench_corpus "$BEIR")"
[[ -f "$BEIR/corpus.jsonl" ]] || die "$BEIR has no corpus.jsonl"
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time, Debian package time) is needed"

BIN="$(bench_binary)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
printf '[embed]\nthreads = 2\n' > "$WORK/tg.toml"
mine() { # DIR NAME
    /usr/bin/time -f '%M %e' -o "$WORK/$2.time" "$BIN" -q mine "$1" --split test --num-negatives "$NEG" \
        --config "$WORK/tg.toml" --out "$WORK/$2" --workspace "$WORK/$2-ws" --no-progress
}
mine "$ROOT/fixtures/quickstart" small
mine "$BEIR" big

python3 - "$BEIR" "$WORK" <<'EOF'
import json, sys
beir, work = sys.argv[1], sys.argv[2]
def peak(name):
    kib, secs = open(f"{work}/{name}.time").read().split()[-2:]
    return int(kib) * 1024, float(secs)
big, secs = peak("big")
small, _ = peak("small")
r = json.load(open(f"{work}/big/report.json"))
texts = 0
docs = 0
for line in open(f"{beir}/corpus.jsonl", encoding="utf-8"):
    d = json.loads(line)
    texts += len((d.get("title", "") + " " + d["text"]).strip().encode())
    docs += 1
queries = 0
for line in open(f"{beir}/queries.jsonl", encoding="utf-8"):
    texts += len(json.loads(line)["text"].encode())
    queries += 1
cfg = json.load(open(f"{work}/big/manifest.json"))["config"]
m = cfg["index"]["m"]
dim = r["embed_documents"].get("dim") or 384
vectors = (docs + queries) * dim * 4
links = docs * (2 * m + m / (m - 1))
graph = links * 56
flat = links * 4
model = texts + vectors + graph
mib = lambda b: b / 2**20
print(f"memory of `tripletgen mine` on {beir}: {docs:,} documents, {queries:,} queries, {secs:.0f} s")
print(f"  peak RSS                      {mib(big):8.0f} MiB  ({big / docs:,.0f} bytes per document)")
print(f"  fixed cost (quickstart run)   {mib(small):8.0f} MiB")
print(f"  texts                         {mib(texts):8.0f} MiB")
print(f"  vectors                       {mib(vectors):8.0f} MiB")
print(f"  graph (hnsw_rs, 56 B a link)  {mib(graph):8.0f} MiB  (flat graph after the build: {mib(flat):.0f} MiB)")
print(f"  (peak - fixed) / (texts + vectors + graph) = {(big - small) / model:.2f}  (target <= 1.5)")
print(f"  peak / (texts + vectors + graph)          = {big / model:.2f}")
stages = r.get("memory", {}).get("peak_after", [])
if stages:
    print("  peak RSS at the end of each stage: " + ", ".join(f"{p['stage']} {mib(p['peak_rss_bytes']):.0f}" for p in stages) + " MiB")
EOF
