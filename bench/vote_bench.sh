#!/usr/bin/env bash
# Engagement benchmarks (issue 3), side by side in one run: the bare endpoint, POST vote on one
# poll from VIEWERS distinct viewers, GET vote, POST rank, POST accumulate, and redis-benchmark
# doing one HINCRBY per request against a local redis-server (AOF everysec), all at the same
# connection count, with and without pipelining. Server and redis-server on core 0, the load
# generators on core 1.
#   bash bench/vote_bench.sh          (CONNECTIONS=256 VIEWERS=100000 DURATION=8 DEPTH=16)
# Selected rows only (same order, same server): ONLY is a comma list of healthz, vote, getvote,
# rank, accumulate, redis; DEPTHS the pipeline depths to run (default "1 $DEPTH"), e.g.
#   ONLY=vote,rank,accumulate DEPTHS=16 bash bench/vote_bench.sh
# KEEP_DATA=DIR copies the server's data directory (RocksDB LOG included) to DIR at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MEDKIT_BIN:-build/release/medkit}
LOADGEN=${MEDKIT_LOADGEN:-build/release/bench/medkit_loadgen}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-256}
DEPTH=${DEPTH:-16}
VIEWERS=${VIEWERS:-100000}
ONLY=${ONLY:-healthz,vote,getvote,rank,accumulate,redis}
DEPTHS=${DEPTHS:-1 $DEPTH}
KEEP_DATA=${KEEP_DATA:-}
CLIENT=benchext
work=$(mktemp -d)
cleanup() {
  local pid
  pid=$(cat "$work/pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  if [ -n "$KEEP_DATA" ]; then rm -rf "$KEEP_DATA"; cp -r "$work/data" "$KEEP_DATA" || true; fi
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  sleep 0.2
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

taskset -c 0 "$BIN" serve --stage sandbox --port 0 --threads 1 --data-dir "$work/data" \
  --log-level warn > "$work/server.log" 2>&1 &
echo $! > "$work/pid"
for _ in $(seq 100); do grep -q 'listening on' "$work/server.log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$work/server.log")
url="http://127.0.0.1:$port"

# VIEWERS distinct viewer tokens, 1000 per authtoken call.
: > "$work/viewers.tok"
for ((start = 0; start < VIEWERS; start += 1000)); do
  end=$((start + 1000 < VIEWERS ? start + 1000 : VIEWERS))
  ids=$(seq -s, "$start" $((end - 1)) | sed 's/\([0-9][0-9]*\)/"v\1"/g')
  curl -s -X POST "$url/v1/e/authtoken" \
    -d "{\"app_id\":\"$CLIENT\",\"channel_id\":\"777\",\"role\":\"viewer\",\"user_ids\":[$ids]}" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); [print("'"$CLIENT"' " + t) for t in d.get("tokens", [d.get("token")])]' \
    >> "$work/viewers.tok"
done
curl -s -X POST "$url/v1/e/authtoken" \
  -d "{\"app_id\":\"$CLIENT\",\"channel_id\":\"777\",\"role\":\"broadcaster\"}" |
  sed -E 's/.*"token":"([^"]+)".*/'"$CLIENT"' \1/' > "$work/broadcaster.tok"

run() {  # name method path token_file body_kind depth pool
  local out
  out=$(taskset -c 1 "$LOADGEN" --url "$url" --connections "$CONNECTIONS" --depth "$6" \
    --duration "$DURATION" --method "$2" --path "$3" --tokens "$4" --body-kind "$5" \
    --pool "$7" 2>&1 | grep '^RESULT')
  local rps p50 p99 non2xx
  rps=$(echo "$out" | sed -n 's/.*rps=\([0-9.]*\).*/\1/p')
  p50=$(echo "$out" | sed -n 's/.*p50_us=\([0-9.]*\).*/\1/p')
  p99=$(echo "$out" | sed -n 's/.*p99_us=\([0-9.]*\).*/\1/p')
  non2xx=$(echo "$out" | sed -n 's/.*non2xx=\([0-9]*\).*/\1/p')
  printf '| %-30s | %5s | %12s | %9s us | %9s us | %7s |\n' "$1" "$6" "$rps" "$p50" "$p99" "$non2xx"
  echo "$6 $rps $1" >> "$work/rows"
}

redis_run() {  # depth
  local rport out rps
  rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$work/redis-$1"
  taskset -c 0 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly yes \
    --appendfsync everysec --dir "$work/redis-$1" --daemonize yes --pidfile "$work/redis.pid" \
    --logfile "$work/redis-$1/redis.log" >/dev/null
  for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  out=$(taskset -c 1 redis-benchmark -p "$rport" -c "$CONNECTIONS" -P "$1" -n $((2000000 * $1 / 16 + 200000)) \
    -r "$VIEWERS" -q HINCRBY poll:bench __rand_int__ 1 2>&1 | tr '\r' '\n' |
    grep -E 'requests per second' | tail -1 || true)
  rps=$(echo "$out" | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p')
  local p50
  p50=$(echo "$out" | sed -n 's/.*p50=\([0-9.]*\) msec.*/\1/p')
  printf '| %-30s | %5s | %12s | %9s ms |           |         |\n' "redis HINCRBY (AOF everysec)" "$1" "$rps" "${p50:-?}"
  echo "$1 $rps redis" >> "$work/rows"
  redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
  rm -f "$work/redis.pid"
}

echo "OpenMEDKit engagement benchmark: $(date -u +%FT%TZ), $(nproc) cores; server 1 thread and"
echo "redis-server on core 0, load generators on core 1; $CONNECTIONS connections; $VIEWERS viewers."
echo
echo "| scenario                       | depth |        req/s |          p50 |          p99 | non-2xx |"
echo "|--------------------------------|------:|-------------:|-------------:|-------------:|--------:|"
want() { [[ ",$ONLY," == *",$1,"* ]]; }
for depth in $DEPTHS; do
  pool=$(( (VIEWERS + depth - 1) / depth ))
  want healthz    && run "GET /healthz"          GET  /healthz                    -                        none       "$depth" 1000
  want vote       && run "POST vote (one poll)"  POST "/v1/e/vote?id=bench"       "$work/viewers.tok"      vote       "$depth" "$pool"
  want getvote    && run "GET vote"              GET  "/v1/e/vote?id=bench"       "$work/broadcaster.tok"  none       "$depth" 1000
  want rank       && run "POST rank"             POST "/v1/e/rank?id=bench"       "$work/viewers.tok"      rank       "$depth" "$pool"
  want accumulate && run "POST accumulate"       POST "/v1/e/accumulate?id=bench" "$work/viewers.tok"      accumulate "$depth" "$pool"
  if want redis && command -v redis-benchmark >/dev/null; then redis_run "$depth"; fi
done
echo
echo "Ratios at the same depth (to GET /healthz, and POST vote to redis HINCRBY):"
python3 - "$work/rows" <<'PY'
import sys
rows = [l.split(None, 2) for l in open(sys.argv[1])]
base, redis, vote = {}, {}, {}
for depth, rps, name in rows:
    rps = float(rps or 0)
    name = name.strip()
    if name == "GET /healthz": base[depth] = rps
    if name == "redis": redis[depth] = rps
    if name.startswith("POST vote"): vote[depth] = rps
for depth, rps, name in rows:
    name = name.strip()
    if name not in ("GET /healthz", "redis") and base.get(depth):
        print(f"  {name:24s} depth {depth:>2}: {float(rps or 0) / base[depth]:.2f} of /healthz")
for depth in vote:
    if redis.get(depth):
        print(f"  POST vote / redis HINCRBY depth {depth:>2}: {vote[depth] / redis[depth]:.2f}")
PY
