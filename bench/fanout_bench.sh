#!/usr/bin/env bash
# Viewer fan-out benchmark (issue 4): one broadcast to 10,000 sockets on one channel, and to
# 1,000 channels of 10 sockets each; deliveries per second and delivery latency; server memory
# per idle socket at 10,000 connections. Server (1 thread) on core 0, medkit_fanout on core 1.
#   bash bench/fanout_bench.sh          (SOCKETS=10000 MESSAGES=200)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MEDKIT_BIN:-build/release/medkit}
FANOUT=${MEDKIT_FANOUT:-build/release/bench/medkit_fanout}
SOCKETS=${SOCKETS:-10000}
MESSAGES=${MESSAGES:-200}
CLIENT=benchext
work=$(mktemp -d)
cleanup() {
  local pid
  pid=$(cat "$work/pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

cat > "$work/config.json" <<JSON
{"messaging": {"rate_burst": 1000000, "rate_per_minute": 60000000}}
JSON
taskset -c 0 "$BIN" serve --stage sandbox --port 0 --threads 1 --data-dir "$work/data" \
  --config "$work/config.json" --log-level warn > "$work/server.log" 2>&1 &
echo $! > "$work/pid"
for _ in $(seq 100); do grep -q 'listening on' "$work/server.log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$work/server.log")
pid=$(cat "$work/pid")

# Tokens signed with the sandbox server's key (as POST authtoken would mint them): one viewer
# and one broadcaster per channel, channels c0..c999.
python3 - "$work/data/signing.key" "$work" "$CLIENT" <<'PY'
import base64, hashlib, hmac, json, sys, time
key = base64.b64decode(open(sys.argv[1]).read().strip())
work, client = sys.argv[2], sys.argv[3]
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b'=').decode()
def tok(claims):
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps(claims).encode())
    s = b64(hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{client} {h}.{p}.{s}"
exp = int(time.time()) + 3600
with open(f"{work}/viewers.tok", "w") as v, open(f"{work}/bc.tok", "w") as b:
    for c in range(1000):
        base = {"exp": exp, "allowed_stage": "sandbox", "channel_id": f"c{c}", "extension_id": client}
        v.write(tok({**base, "role": "viewer", "opaque_user_id": f"Uv{c}", "user_id": f"v{c}"}) + "\n")
        b.write(tok({**base, "role": "broadcaster", "opaque_user_id": f"Uc{c}", "user_id": f"c{c}"}) + "\n")
PY

rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
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

