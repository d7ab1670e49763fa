#!/usr/bin/env bash
# GameLink benchmarks (issue 5): (1) server memory per authenticated GameLink connection at
# SOCKETS (10,000) connections; (2) p99 latency of a GameLink `set state` pushed to 100
# subscribed games while those connections are open; (3) a GameLink poll with VIEWERS
# (100,000) REST voters: POST vote req/s while the game receives its pushes, the push cadence
# the game saw, and the final result checked exactly. Server (1 thread) on core 0, clients on
# core 1.
#   bash bench/gamelink_bench.sh          (SOCKETS=10000 VIEWERS=100000 DURATION=8)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MEDKIT_BIN:-build/release/medkit}
FANOUT=${MEDKIT_FANOUT:-build/release/bench/medkit_fanout}
LOADGEN=${MEDKIT_LOADGEN:-build/release/bench/medkit_loadgen}
SOCKETS=${SOCKETS:-10000}
VIEWERS=${VIEWERS:-100000}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-256}
CLIENT=benchext
work=$(mktemp -d)
cleanup() {
  local pid
  pid=$(cat "$work/pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  [ -n "${gpid:-}" ] && kill "$gpid" 2>/dev/null || true
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

taskset -c 0 "$BIN" serve --stage sandbox --port 0 --threads 1 --data-dir "$work/data" \
  --log-level warn > "$work/server.log" 2>&1 &
echo $! > "$work/pid"
for _ in $(seq 100); do grep -q 'listening on' "$work/server.log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$work/server.log")
pid=$(cat "$work/pid")

# Tokens signed with the sandbox key: a broadcaster per channel c0..c999, VIEWERS viewers of c0.
python3 - "$work/data/signing.key" "$work" "$CLIENT" "$VIEWERS" <<'PY'
import base64, hashlib, hmac, json, sys, time
key = base64.b64decode(open(sys.argv[1]).read().strip())
work, client, viewers = sys.argv[2], sys.argv[3], int(sys.argv[4])
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b'=').decode()
h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
def tok(claims):
    p = b64(json.dumps(claims, separators=(",", ":")).encode())
    s = b64(hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{client} {h}.{p}.{s}"
exp = int(time.time()) + 3600
with open(f"{work}/bc.tok", "w") as b:
    for c in range(1000):
        b.write(tok({"exp": exp, "allowed_stage": "sandbox", "channel_id": f"c{c}", "role": "broadcaster",
                     "opaque_user_id": f"Uc{c}", "user_id": f"c{c}", "extension_id": client}) + "\n")
with open(f"{work}/viewers.tok", "w") as v:
    for i in range(viewers):
        v.write(tok({"exp": exp, "allowed_stage": "sandbox", "channel_id": "c0", "role": "viewer",
                     "opaque_user_id": f"Uv{i}", "user_id": f"v{i}", "extension_id": client}) + "\n")
PY

rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
echo "OpenMEDKit GameLink benchmark: $(date -u +%FT%TZ), $(nproc) cores; server 1 thread on core 0,"
echo "clients on core 1."
echo

# (1) + (2): SOCKETS authenticated games, 100 of them subscribed to channel c0's state.
before=$(rss)
taskset -c 1 "$FANOUT" --mode gamelink --port "$port" --publisher-tokens "$work/bc.tok" \
  --sockets "$SOCKETS" --channels 1000 --subscribers 100 --messages 200 --idle-seconds 4 \
  > "$work/gl.out" 2>/dev/null &
fpid=$!
for _ in $(seq 600); do grep -q '^IDLE' "$work/gl.out" 2>/dev/null && break; sleep 0.1; done
sleep 2
during=$(rss)
wait "$fpid" || true
echo "Server RSS: $before KiB before, $during KiB with $((SOCKETS + 1)) authenticated GameLink" \
     "connections: $(( (during - before) * 1024 / (SOCKETS + 1) )) bytes per connection."
out=$(grep '^RESULT' "$work/gl.out" || true)
v() { echo "$out" | sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
echo
echo "| scenario | pushes | p50 | p99 | max | missing |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| GameLink set state -> 100 subscribed games ($((SOCKETS + 1)) connections open), 200 sets | $(v deliveries) | $(v p50_us) us | $(v p99_us) us | $(v max_us) us | $(v missing) |"
echo

# (3): a GameLink poll, VIEWERS REST voters.
bc0=$(head -1 "$work/bc.tok" | cut -d' ' -f2)
taskset -c 1 node --experimental-websocket --no-warnings bench/gamelink_poll_game.mjs "$port" "$CLIENT" "$bc0" bench \
  > "$work/game.out" 2>&1 &
gpid=$!
for _ in $(seq 100); do grep -q READY "$work/game.out" 2>/dev/null && break; sleep 0.1; done
vote=$(taskset -c 1 "$LOADGEN" --url "http://127.0.0.1:$port" --connections "$CONNECTIONS" --depth 1 \
  --duration "$DURATION" --method POST --path "/v1/e/vote?id=bench" --tokens "$work/viewers.tok" \
  --body-kind vote --pool "$VIEWERS" 2>&1 | grep '^RESULT')
sleep 2.5
kill -TERM "$gpid"; wait "$gpid" || true; gpid=
game=$(grep '^{' "$work/game.out" | tail -1)
rest=$(curl -s "http://127.0.0.1:$port/v1/e/vote?id=bench" -H "Authorization: $(head -1 "$work/bc.tok")")
python3 - "$vote" "$game" "$rest" "$VIEWERS" <<'PY'
import json, sys
vote, game, rest, viewers = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
kv = dict(x.split("=") for x in vote.split()[1:])
requests = int(kv["requests"])
# medkit_loadgen: request n of the pool (1-based) carries token n % VIEWERS and value (n*7) % 32;
# once every pool entry was sent, every viewer's last vote is known.
specific = [0] * 32
for n in range(1, viewers + 1):
    specific[(n * 7) % 32] += 1
expected = {"count": viewers, "sum": sum(i * c for i, c in enumerate(specific)), "specific": specific}
last = game["last"] or {}
print(f"| POST vote on the GameLink poll, {viewers} viewers | {float(kv['rps']):.0f} req/s | "
      f"p50 {kv['p50_us']} us | p99 {kv['p99_us']} us | non-2xx {kv['non2xx']} |")
print()
print(f"Game: {game['pushes']} poll pushes, shortest interval {game['min_interval_ms']} ms; "
      f"last push count {last.get('count')}, sum {last.get('sum')}.")
covered = requests >= viewers * 1.05  # every pool entry sent at least once (some in flight)
print(f"REST GET vote: count {rest['count']}, sum {rest['sum']}.")
if covered:
    exact = (rest["count"] == expected["count"] and rest["sum"] == expected["sum"] and
             rest["specific"] == expected["specific"] and last.get("count") == rest["count"] and
             last.get("sum") == rest["sum"] and last.get("results") == expected["specific"])
    print(f"Expected from the requests sent: count {expected['count']}, sum {expected['sum']}: "
          f"{'EXACT (REST and the last push)' if exact else 'MISMATCH'}.")
else:
    print(f"Only {requests} requests for {viewers} viewers: raise DURATION to cover them all.")
PY
