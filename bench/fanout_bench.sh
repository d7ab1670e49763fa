#!/usr/bin/env bash
# Viewer fan-out benchmark (issue 4): one broadcast to 10,000 sockets on one channel, and to
# 1,000 channels of 10 sockets each; deliveries per second and delivery latency; server memory
# per idle socket at 10,000 connections. Server (1 thread) on core 0, medkit_fanout on core 1.
#   bash bench/fanout_bench.sh          (SOCKETS=10000 MESSAGES=200)
set -euo pipefail
cd "$(dirname "$0")/.."
SOCKETS=${SOCKETS:-10000}
MESSAGES=${MESSAGES:-200}
source bench/lib.sh

cat > "$work/config.json" <<JSON
{"messaging": {"rate_burst": 1000000, "rate_per_minute": 60000000}}
JSON
bench_start_server --config "$work/config.json"
# One viewer and one broadcaster per channel, channels c0..c999.
bench_tokens 1000 1000
echo "OpenMEDKit fan-out benchmark: $(date -u +%FT%TZ), $(nproc) cores; server 1 thread on core 0,"
echo "medkit_fanout on core 1; native WebSocket stream (/v1/e/events)."
echo
# Memory per idle socket: RSS with SOCKETS idle connections open, minus RSS before.
before=$(rss)
taskset -c 1 "$FANOUT" --port "$port" --tokens "$work/viewers.tok" --publisher-tokens "$work/bc.tok" \
  --sockets "$SOCKETS" --channels 1000 --messages 1 --idle-seconds 4 > "$work/idle.out" 2>/dev/null &
fpid=$!
for _ in $(seq 300); do grep -q '^IDLE' "$work/idle.out" 2>/dev/null && break; sleep 0.1; done
sleep 2
during=$(rss)
wait "$fpid" || true
echo "Server RSS: $before KiB before, $during KiB with $SOCKETS idle sockets open:" \
     "$(( (during - before) * 1024 / SOCKETS )) bytes per socket."
echo
echo "| scenario                                  | window | deliveries/s |      p50 |      p99 |      max | missing |"
echo "|-------------------------------------------|-------:|-------------:|---------:|---------:|---------:|--------:|"
run() {  # name channels messages window
  local out
  out=$(taskset -c 1 "$FANOUT" --port "$port" --tokens "$work/viewers.tok" \
        --publisher-tokens "$work/bc.tok" --sockets "$SOCKETS" --channels "$2" \
        --messages "$3" --window "$4" 2>/dev/null | grep '^RESULT')
  local v; v() { echo "$out" | sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
  printf '| %-41s | %6s | %12s | %5s us | %5s us | %5s us | %7s |\n' "$1" "$4" \
    "$(v deliveries_per_s)" "$(v p50_us)" "$(v p99_us)" "$(v max_us)" "$(v missing)"
}
run "$SOCKETS sockets, 1 channel" 1 "$MESSAGES" 1
run "$SOCKETS sockets, 1 channel" 1 "$MESSAGES" 8
run "$SOCKETS sockets, 1,000 channels of $((SOCKETS / 1000))" 1000 $((MESSAGES * 10)) 1
run "$SOCKETS sockets, 1,000 channels of $((SOCKETS / 1000))" 1000 $((MESSAGES * 10)) 16

