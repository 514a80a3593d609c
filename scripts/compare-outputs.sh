#!/usr/bin/env bash
# Byte-for-byte comparison of a binary's outputs on the fixtures against a reference capture.
#
#   scripts/compare-outputs.sh capture BIN DIR    # run the fixed set of commands with BIN, outputs into DIR
#   scripts/compare-outputs.sh compare REF NEW    # cmp every data file and report.html; report.json and
#                                                 # manifest.json compared without timing fields
#   scripts/compare-outputs.sh reuse BIN REF      # BIN reruns the quickstart on a copy of REF's workspace:
#                                                 # everything must come from the cache (0 embedded)
#
# Runs offline on fixtures/quickstart: the quickstart config, configs/beir-example.toml pointed at the
# fixture (HNSW forced, random sampling, range_min, max_score), and `mine` with flags (review, every
# format, relative margin off, HNSW), plus `inspect` and `eval` on the results.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

capture() {
    local bin; bin="$(realpath "$1")"; local dir="$2"
    rm -rf "$dir"; mkdir -p "$dir/configs"
    # beir-example.toml, offline: the fixture instead of scifact, HNSW instead of auto.
    sed -e "s#^beir = .*#beir = \"$ROOT/fixtures/quickstart\"#" -e 's#^split = .*#split = "test"#' \
        -e 's#^kind = .*#kind = "hnsw"#' -e "s#^dir = .*#dir = \"$dir/beir\"#" \
        -e 's#^recall_sample = .*#recall_sample = 20#' configs/beir-example.toml > "$dir/configs/beir-fixture.toml"
    "$bin" -q --no-progress run --config configs/quickstart.toml --out "$dir/quickstart" --workspace "$dir/ws-quickstart" 2>"$dir/quickstart.stderr"
    "$bin" -q --no-progress run --config "$dir/configs/beir-fixture.toml" --workspace "$dir/ws-beir" 2>"$dir/beir.stderr"
    "$bin" -q --no-progress mine fixtures/quickstart --out "$dir/mine-flags" --workspace "$dir/ws-mine" --review \
        --review-margin 0.05 --relative-margin none --absolute-margin 0.02 --sampling random --seed 7 \
        --format triplet,n-tuple,labeled-pair,labeled-list,flag-jsonl 2>"$dir/mine-flags.stderr"
    "$bin" -q --no-progress mine fixtures/quickstart --out "$dir/mine-hnsw" --workspace "$dir/ws-mine" --index hnsw \
        --range-min 2 --range-max 30 --num-negatives 3 2>"$dir/mine-hnsw.stderr"
    "$bin" -q --no-progress inspect "$dir/quickstart" --seed 7 -n 10 > "$dir/inspect-seed.txt"
    "$bin" -q --no-progress inspect "$dir/quickstart" --strategy synonym --format labeled-list -n 3 --json > "$dir/inspect-strategy.jsonl"
    "$bin" -q --no-progress inspect "$dir/mine-flags" --query-id q002 --format n-tuple --width 0 > "$dir/inspect-query.txt"
    "$bin" -q --no-progress eval fixtures/quickstart --k 1,3,5,10 --run-out "$dir/eval.trec" --workspace "$dir/ws-mine" > "$dir/eval.txt" 2>/dev/null
}

# report.json / manifest.json minus what varies between runs (timings, rates, paths of the capture).
strip_json() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, re, sys
path, ref, new = sys.argv[1], sys.argv[2], sys.argv[3]
VARY = re.compile(r"(seconds$|^timings$|_per_s$|per_sec|elapsed|duration)", re.I)
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if not VARY.search(k)}
    if isinstance(v, list):
        return [strip(x) for x in v]
    if isinstance(v, str):
        return v.replace(ref, "<DIR>").replace(new, "<DIR>")
    return v
print(json.dumps(strip(json.load(open(path))), indent=1, sort_keys=True))
PY
}

compare() {
    local ref; ref="$(realpath "$1")"; local new; new="$(realpath "$2")"; local bad=0 n=0
    while IFS= read -r f; do
        rel="${f#"$ref"/}"
        case "$rel" in ws-*|*.stderr|configs/*) continue ;; esac
        n=$((n + 1))
        if [[ ! -f "$new/$rel" ]]; then echo "MISSING $rel"; bad=1; continue; fi
        case "$rel" in
            */report.json|*/manifest.json|eval.txt)
                if [[ "$rel" == eval.txt ]]; then
                    # the model line carries a duration
                    if ! diff <(sed -E 's/[0-9.]+s,/Xs,/; s#'"$ref"'#<DIR>#g' "$f") <(sed -E 's/[0-9.]+s,/Xs,/; s#'"$new"'#<DIR>#g' "$new/$rel") >/dev/null; then
                        echo "DIFFER  $rel"; bad=1; else echo "same*   $rel (minus timing)"; fi
                elif ! diff <(strip_json "$f" "$ref" "$new") <(strip_json "$new/$rel" "$ref" "$new") >/dev/null; then
                    echo "DIFFER  $rel (minus timings)"; diff <(strip_json "$f" "$ref" "$new") <(strip_json "$new/$rel" "$ref" "$new") | head -20; bad=1
                else echo "same*   $rel (minus timings)"; fi ;;
            inspect-*)
                if cmp -s <(sed "s#$ref#<DIR>#g" "$f") <(sed "s#$new#<DIR>#g" "$new/$rel"); then
                    echo "same    $rel"; else echo "DIFFER  $rel"; bad=1; fi ;;
            *)
                if cmp -s "$f" "$new/$rel"; then echo "same    $rel"; else echo "DIFFER  $rel"; bad=1; fi ;;
        esac
    done < <(find "$ref" -type f | sort)
    echo "compared $n files: $([[ $bad == 0 ]] && echo ALL IDENTICAL || echo DIFFERENCES FOUND)"
    return $bad
}

reuse() {
    local bin; bin="$(realpath "$1")"; local ref; ref="$(realpath "$2")"; local tmp; tmp="$(mktemp -d)"
    cp -r "$ref/ws-quickstart" "$tmp/ws"
    "$bin" --no-progress run --config configs/quickstart.toml --out "$tmp/out" --workspace "$tmp/ws" --json 2>"$tmp/stderr" >"$tmp/report.json"
    grep -E "embed +(docs|queries)" "$tmp/stderr"
    cmp "$ref/quickstart/triplet.parquet" "$tmp/out/triplet.parquet" && echo "old workspace reused: triplet.parquet identical"
    rm -rf "$tmp"
}

case "${1:-}" in
    capture) capture "$2" "$3" ;;
    compare) compare "$2" "$3" ;;
    reuse) reuse "$2" "$3" ;;
    *) sed -n 2,12p "$0"; exit 2 ;;
esac
