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

# wait_for PORT PID LOG: until the server answers /health, or fail with its log if it stopped.
wait_for() {
    echo "waiting for the server on port $1 (it builds first)"
    for _ in $(seq 1 600); do
        if curl -fsS "http://127.0.0.1:$1/health" >/dev/null 2>&1; then return; fi
        if ! kill -0 "$2" 2>/dev/null; then
            echo "error: the server stopped; its log:" >&2; cat "$3" >&2; exit 1
        fi
        sleep 1
    done
}

spec_port=$((port + 1))
log=target/e2e-server.log
spec_log=target/e2e-speculative-server.log
cargo xtask run serve --port "$port" >"$log" 2>&1 &
server=$!
spec_server=
trap 'kill $server $spec_server 2>/dev/null; pkill -f "tiny-llm serve --port $port" 2>/dev/null; pkill -f "tiny-llm serve --port $spec_port" 2>/dev/null || true' EXIT
wait_for "$port" "$server" "$log"
"$venv/bin/python" chapters/11-serving/e2e/openai_client.py "http://127.0.0.1:$port/v1"

# Speculative decoding inside the batches (chapter 14): the same greedy text as the plain server.
cargo xtask run serve --port "$spec_port" --speculative ngram >"$spec_log" 2>&1 &
spec_server=$!
wait_for "$spec_port" "$spec_server" "$spec_log"
"$venv/bin/python" chapters/11-serving/e2e/speculative_client.py \
    "http://127.0.0.1:$port/v1" "http://127.0.0.1:$spec_port/v1"
