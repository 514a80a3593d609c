# Shared by the benchmark scripts (sourced; needs HERE, ROOT, CACHE and die()).

# bench_corpus NAME: the BEIR folder of `10k`/`100k` (built by corpora.py once, cached); any other
# NAME is a folder path. Prints the absolute folder.
bench_corpus() {
    case "$1" in
        10k | 100k)
            local dir="$CACHE/bench-corpus-$1"
            [[ -f "$dir/.ok" ]] || { rm -rf "$dir"; python3 "$HERE/corpora.py" "$1" "$dir" >&2 && touch "$dir/.ok"; } \
                || die "corpora.py failed"
            printf '%s\n' "$dir" ;;
        *) (cd "$1" && pwd) || die "no folder $1" ;;
    esac
}

# bench_binary: build tripletgen (release, the downstream benchmark's target folder), fetch the
# models, print the binary's path.
bench_binary() {
    local target="${DOWNSTREAM_TARGET:-$CACHE/downstream-target}"
    (cd "$ROOT" && CARGO_TARGET_DIR="$target" cargo build --release --quiet) >&2 || die "cargo build failed"
    "$target/release/tripletgen" -q fetch-models >/dev/null || die "fetch-models failed"
    printf '%s\n' "$target/release/tripletgen"
}
