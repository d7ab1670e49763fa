#!/usr/bin/env bash
# HTTP load benchmarks for issue 2, side by side in one run (see docs/performance.md).
# The server runs with one event-loop thread pinned to core 0 on RocksDB in a temp dir; the
# load generator (bench/loadgen.cc, one thread) runs pinned to core 1. Each scenario runs with
# and without pipelining. medkit_loadgen records one latency per response, so p50/p99 are
# meaningful for pipelined rows too (wrk records one per pipelined batch).
#   cmake --build --preset release --target medkit medkit_loadgen
#   bash bench/http_bench.sh            # 64 connections, 8 s per row (first 1 s is warm-up)
#   DURATION=15 CONNECTIONS=64 DEPTH=16 WARMUP=2 bash bench/http_bench.sh
#   LOADGEN=wrk bash bench/http_bench.sh  # old wrk runs (its p99 is wrong for depth > 1)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MEDKIT_BIN:-build/release/medkit}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-64}
DEPTH=${DEPTH:-16}
VIEWERS=${VIEWERS:-1000}
WARMUP=${WARMUP:-1}
LOADGEN=${LOADGEN:-build/release/bench/medkit_loadgen}
if [[ $LOADGEN != wrk && ! -x $LOADGEN ]]; then
  echo "no load generator at $LOADGEN: build it (cmake --build --preset release --target" \
    "medkit_loadgen) or set LOADGEN=wrk" >&2
  exit 1
fi
CLIENT=benchext
work=$(mktemp -d)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

taskset -c 0 "$BIN" serve --stage sandbox --port 0 --threads 1 --data-dir "$work/data" \
  --log-level warn > "$work/server.log" 2>&1 &
echo $! > "$work/pid"
for _ in $(seq 100); do
  grep -q 'listening on' "$work/server.log" && break
  sleep 0.1
done
port=$(sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$work/server.log")
url="http://127.0.0.1:$port"

# Tokens: one broadcaster, and VIEWERS distinct viewers from one authtoken call.
curl -s -X POST "$url/v1/e/authtoken" \
  -d "{\"app_id\":\"$CLIENT\",\"channel_id\":\"777\",\"role\":\"broadcaster\"}" |
  sed -E 's/.*"token":"([^"]+)".*/'"$CLIENT"' \1/' > "$work/broadcaster.tok"
ids=$(seq -s, 1 "$VIEWERS" | sed 's/\([0-9][0-9]*\)/"v\1"/g')
curl -s -X POST "$url/v1/e/authtoken" \
  -d "{\"app_id\":\"$CLIENT\",\"channel_id\":\"777\",\"role\":\"viewer\",\"user_ids\":[$ids]}" |
  python3 -c 'import json,sys; [print("'"$CLIENT"' " + t) for t in json.load(sys.stdin)["tokens"]]' \
  > "$work/viewers.tok"
# A realistic channel-state document to read and patch.
curl -s -X POST "$url/v1/e/channel_state" -H "Authorization: $(cat "$work/broadcaster.tok")" \
  -d '{"counter":0,"title":"Bench stream","scores":{"red":10,"blue":12},"round":3,"open":true}' \
  > /dev/null

us() {  # microseconds -> "412us" / "1.25ms", as wrk prints them
  awk -v v="$1" 'BEGIN { if (v == "") print "?"; else if (v < 1000) printf "%.0fus\n", v;
                         else printf "%.2fms\n", v / 1000 }'
}

field() {  # name "RESULT k=v k=v ..." -> v
  echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

run() {  # name method path token_file body_kind depth
  local out rps p50 p99 non2xx errors
  if [[ $LOADGEN == wrk ]]; then
    out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
      -s bench/lua/medkit.lua "$url" -- "$2" "$3" "$6" "$4" "$5" 2>&1) || true
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    errors=$(echo "$out" | awk '/Socket errors/ {n = 0; for (i = 4; i <= NF; i += 2) n += $i; print n}')
  else
    out=$(taskset -c 1 "$LOADGEN" --url "$url" --connections "$CONNECTIONS" --depth "$6" \
      --duration "$DURATION" --warmup "$WARMUP" --method "$2" --path "$3" --tokens "$4" \
      --body-kind "$5" 2>&1) || true
    local result
    result=$(echo "$out" | grep '^RESULT ' || true)
    if [[ -z $result ]]; then
      echo "$1 depth $6: load generator failed:" >&2
      echo "$out" >&2
    fi
    rps=$(field rps "$result")
    p50=$(us "$(field p50_us "$result")")
    p99=$(us "$(field p99_us "$result")")
    non2xx=$(field non2xx "$result")
    errors=$(field errors "$result")
  fi
  printf '| %-24s | %5s | %12s | %9s | %9s | %7s |\n' "$1" "$6" "${rps:-?}" "$p50" "$p99" "${non2xx:-0}"
  echo "$1 $6 ${rps:-0}" >> "$work/rows"
  if [[ ${errors:-0} != 0 ]]; then echo "  $1, depth $6: $errors socket errors/timeouts" >> "$work/errors"; fi
}

if [[ $LOADGEN == wrk ]]; then
  gen="wrk 1 thread (core 1), $CONNECTIONS connections, ${DURATION}s per row (p99 unreliable for depth > 1)"
else
  gen="medkit_loadgen 1 thread (core 1), $CONNECTIONS connections, ${DURATION}s per row (first ${WARMUP}s not counted)"
fi
echo "OpenMEDKit HTTP benchmark: $(date -u +%FT%TZ), $(nproc) cores, server 1 thread (core 0),"
echo "$gen, store rocksdb."
echo
echo "| scenario                 | depth |        req/s |       p50 |       p99 | non-2xx |"
echo "|--------------------------|------:|-------------:|----------:|----------:|--------:|"
for depth in 1 "$DEPTH"; do
  run "GET /healthz"         GET   /healthz               -                       none  "$depth"
  run "GET channel_state"    GET   /v1/e/channel_state    "$work/broadcaster.tok" none  "$depth"
  run "POST viewer_state"    POST  /v1/e/viewer_state     "$work/viewers.tok"     state "$depth"
  run "PATCH channel_state"  PATCH /v1/e/channel_state    "$work/broadcaster.tok" patch "$depth"
done
echo
if [[ -s $work/errors ]]; then
  echo "Socket errors (connect, read, write, malformed response, timeout):"
  cat "$work/errors"
else
  echo "Socket errors: none."
fi
echo
echo "Ratios to GET /healthz at the same depth:"
python3 - "$work/rows" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
base = {}
data = []
for r in rows:
    name = " ".join(r[:-2]); depth = r[-2]; rps = float(r[-1])
    data.append((name, depth, rps))
    if name == "GET /healthz" and rps > 0: base[depth] = rps
for name, depth, rps in data:
    if name != "GET /healthz" and depth in base:
        print(f"  {name:22s} depth {depth:>2}: {rps / base[depth]:.2f}")
PY
