#!/usr/bin/env bash
# The server end to end: start `cargo xtask run serve`, drive it with the official openai client
# (openai_client.py), stop it. Run by .ci/run; by hand: bash chapters/11-serving/e2e/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."

port="${PORT:-8765}"
venv=target/e2e-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { echo "error: python3 -m venv failed; fix: apt-get install python3-venv" >&2; exit 1; }
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r chapters/11-serving/e2e/requirements.txt

log=target/e2e-server.log
cargo xtask run serve --port "$port" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; pkill -f "tiny-llm serve --port $port" 2>/dev/null || true' EXIT

echo "waiting for the server on port $port (it builds first)"
for _ in $(seq 1 600); do
    if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 $server 2>/dev/null; then
        echo "error: the server stopped; its log:" >&2; cat "$log" >&2; exit 1
    fi
    sleep 1
done
"$venv/bin/python" chapters/11-serving/e2e/openai_client.py "http://127.0.0.1:$port/v1"
