# Shared by fanout_bench.sh and gamelink_bench.sh (source it after cd to the repo root):
#   bench_start_server [serve flags...]   starts the release server on a free port, pinned to
#                                         core 0, one thread, data in $work; sets $port, $pid
#   bench_tokens CHANNELS VIEWERS [VC]     writes $work/bc.tok (a broadcaster per channel
#                                         c0..c<CHANNELS-1>) and $work/viewers.tok (viewer i of
#                                         channel i % VC, VC defaulting to CHANNELS), signed with
#                                         the sandbox key
#   rss                                    the server's resident memory, KiB
# The EXIT trap stops the server and anything in $extra_pids, and removes $work.
BIN=${MEDKIT_BIN:-build/release/medkit}
FANOUT=${MEDKIT_FANOUT:-build/release/bench/medkit_fanout}
LOADGEN=${MEDKIT_LOADGEN:-build/release/bench/medkit_loadgen}
CLIENT=${CLIENT:-benchext}
work=$(mktemp -d)
extra_pids=""
bench_cleanup() {
  local p
  p=$(cat "$work/pid" 2>/dev/null || true)
  [ -n "$p" ] && kill "$p" 2>/dev/null && while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
  for p in $extra_pids; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work" 2>/dev/null || true
}
trap bench_cleanup EXIT
ulimit -n "$(ulimit -Hn)"

bench_start_server() {
  taskset -c 0 "$BIN" serve --stage sandbox --port 0 --threads 1 --data-dir "$work/data" \
    --log-level warn "$@" > "$work/server.log" 2>&1 &
  echo $! > "$work/pid"
  for _ in $(seq 100); do grep -q 'listening on' "$work/server.log" && break; sleep 0.1; done
  port=$(sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$work/server.log")
  pid=$(cat "$work/pid")
}

bench_tokens() {
  python3 - "$work/data/signing.key" "$work" "$CLIENT" "$1" "$2" "${3:-$1}" <<'PY'
import base64, hashlib, hmac, json, sys, time
key = base64.b64decode(open(sys.argv[1]).read().strip())
work, client, channels, viewers = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
viewer_channels = int(sys.argv[6])
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b'=').decode()
h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
def tok(claims):
    p = b64(json.dumps(claims, separators=(",", ":")).encode())
    s = b64(hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{client} {h}.{p}.{s}"
exp = int(time.time()) + 3600
base = {"exp": exp, "allowed_stage": "sandbox", "extension_id": client}
with open(f"{work}/bc.tok", "w") as b:
    for c in range(channels):
        b.write(tok({**base, "channel_id": f"c{c}", "role": "broadcaster",
                     "opaque_user_id": f"Uc{c}", "user_id": f"c{c}"}) + "\n")
with open(f"{work}/viewers.tok", "w") as v:
    for i in range(viewers):
        v.write(tok({**base, "channel_id": f"c{i % viewer_channels}", "role": "viewer",
                     "opaque_user_id": f"Uv{i}", "user_id": f"v{i}"}) + "\n")
PY
}

rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
