#!/usr/bin/env bash
# The workspace store's cost per unit of work, SQLite next to PostgreSQL, then the work queue's
# overhead and scaling with workers (BENCHMARKS.md, "Workspace on PostgreSQL"): starts a private PostgreSQL 15 cluster on a free local port (durable settings:
# fsync and synchronous_commit on, as a real server), runs `tripletgen bench workspace` against it,
# and stops it.
#
#   scripts/bench/workspace.sh [--units N] [--batch N]      (extra flags go to `bench workspace`)
#   QUEUE_ARGS="--units 60 --workers 0,1,2" scripts/bench/workspace.sh    (flags of `bench queue`)
#
# PostgreSQL binaries: $TRIPLETGEN_PG_BIN (default /usr/lib/postgresql/15/bin). As root, the server
# runs as the `postgres` user (PostgreSQL refuses root).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/bench"
CACHE="${TRIPLETGEN_CACHE:-$HOME/.cache/tripletgen}"
die() { echo "[workspace.sh] $*" >&2; exit 1; }
source "$ROOT/scripts/bench/common.sh"
B="${TRIPLETGEN_PG_BIN:-/usr/lib/postgresql/15/bin}"
[[ -x "$B/initdb" ]] || die "PostgreSQL is not installed at $B (apt-get install postgresql-15)"
BIN="$(bench_binary)"
D="$(mktemp -d "${TMPDIR:-/tmp}/tripletgen-pg-bench.XXXXXX")"
chmod 755 "$D"
AS=()
if [[ "$(id -u)" == 0 ]]; then AS=(runuser -u postgres --); chown postgres: "$D"; fi
PW="bench-$RANDOM$RANDOM"
printf '%s\n' "$PW" > "$D/pw"
[[ "$(id -u)" == 0 ]] && chown postgres "$D/pw"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop() { "${AS[@]}" "$B/pg_ctl" -D "$D/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$D"; }
trap stop EXIT
"${AS[@]}" "$B/initdb" -D "$D/data" -U tripletgen --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile="$D/pw" -E UTF8 --locale=C --no-instructions >/dev/null
"${AS[@]}" "$B/pg_ctl" -D "$D/data" -l "$D/pg.log" -w -t 30 \
    -o "-p $PORT -k $D -c listen_addresses=127.0.0.1" start >/dev/null
"${AS[@]}" "$B/psql" -X -w -q -h "$D" -p "$PORT" -U tripletgen -d postgres -c 'CREATE DATABASE bench' </dev/null
echo "PostgreSQL $("$B/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (fsync on)" >&2
PGPASSWORD="$PW" "$BIN" bench workspace --workspace "postgres://tripletgen@127.0.0.1:$PORT/bench" "$@"
# The work queue: overhead per unit, and units/s with 0, 1, 2, 4 workers against an instant server.
PGPASSWORD="$PW" "$BIN" bench queue --workspace "postgres://tripletgen@127.0.0.1:$PORT/bench" ${QUEUE_ARGS:-}
