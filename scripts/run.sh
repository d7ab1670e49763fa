#!/usr/bin/env bash
# `make run`: starts the server in the sandbox stage on 127.0.0.1:5000 with RocksDB in ./data.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${MEDKIT_PORT:-5000}
url="http://127.0.0.1:${port}"
cat <<MSG
OpenMEDKit (sandbox stage) on ${url}, data in ./data. Ctrl-C stops it.
Mint a sandbox token and read all_state with it:

  TOKEN=\$(curl -s -X POST ${url}/v1/e/authtoken -d '{"app_id":"my-extension","channel_id":"12345","role":"broadcaster","user_id":"12345"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
  curl -s ${url}/v1/e/all_state -H "Authorization: my-extension \$TOKEN"

MSG
exec ./build/release/medkit serve --stage "${MEDKIT_STAGE:-sandbox}" --listen 127.0.0.1 \
  --port "${port}" --data-dir "${MEDKIT_DATA_DIR:-./data}"
