#!/usr/bin/env bash
# Deploy make-mocks from the prefect.yaml shipped in the installed package to a real Prefect
# server on 127.0.0.1, run it through a process worker, check the run completed and wrote its
# output, and stop what was started. Everything runs in a temporary folder, not the repository:
# the deployment must work from the installed package alone.
#   ALCHEMY_CI_BIN: bin/ of the environment to use (default: the repository's .venv/bin)
set -euo pipefail
bin=${ALCHEMY_CI_BIN:-"$(cd "$(dirname "$0")/.." && pwd)/.venv/bin"}
work=$(mktemp -d)
cd "$work"
export PREFECT_HOME="$work/prefect-home"
port=${PREFECT_CI_PORT:-4287}
export PREFECT_API_URL="http://127.0.0.1:$port/api"
export PREFECT_SERVER_API_HOST=127.0.0.1
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_SERVER_UI_ENABLED=false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180
server_pid=""; worker_pid=""
cleanup() {
    for pid in $worker_pid $server_pid; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

"$bin/prefect" server start --host 127.0.0.1 --port "$port" > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 180); do
    curl -sf "$PREFECT_API_URL/health" > /dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; echo "prefect server died"; exit 1; }
    sleep 1
done
curl -sf "$PREFECT_API_URL/health" > /dev/null || { cat "$work/server.log"; echo "prefect server not up"; exit 1; }
echo "prefect: server up (pid $server_pid)"

out="$work/mocks"
"$bin/prefect" work-pool create alchemy-process --type process
"$bin/prefect" --no-prompt deploy --name make-mocks --prefect-file "$("$bin/python" -m alchemy_obs.flows)"
run_out=$("$bin/prefect" deployment run make-mocks/make-mocks \
    --param "overrides=[\"maps.out_dir=$out\", \"synth.out_dir=$work/synthetic\"]")
echo "$run_out"
run_id=$(echo "$run_out" | grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' | head -1)
[ -n "$run_id" ] || { echo "no flow run id"; exit 1; }

"$bin/prefect" worker start --pool alchemy-process --run-once > "$work/worker.log" 2>&1 &
worker_pid=$!
wait "$worker_pid" || { cat "$work/worker.log"; echo "worker failed"; exit 1; }
worker_pid=""

state=$("$bin/python" - "$run_id" <<'PY'
import asyncio, sys
from prefect.client.orchestration import get_client
async def main(run_id):
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        print(run.state.type.value)
asyncio.run(main(sys.argv[1]))
PY
)
echo "prefect: flow run $run_id ended $state"
if [ "$state" != "COMPLETED" ]; then tail -50 "$work/worker.log"; exit 1; fi
[ -f "$out/dataset.h5" ] || { echo "make-mocks wrote no $out/dataset.h5"; exit 1; }
"$bin/python" -c "
import sys; from alchemy_obs.maps.store import MapStore
s = MapStore(sys.argv[1]); missing = {'hi_mom0', 'continuum'} - set(s.domains)
sys.exit(f'mock domains missing: {missing}' if missing else 0)" "$out/dataset.h5"
echo "prefect: deployment make-mocks ok"
