#!/usr/bin/env bash
# make run: devcloud (router :8080, registry :5001) and the agent against it,
# with the device of test-config.flock. Ctrl-C stops both; so does the agent
# exiting. devcloud's output goes to build/run/devcloud.log.
#
# Expects build/reagent and build/devcloud (make build devcloud). Extra agent
# flags: REAGENT_FLAGS="-debug". DOCKER_HOST is passed through to the agent.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=build/run
DEVICE=test-config.flock
SERIAL=00000000-0000-4000-8000-000000000001
ROUTER_PORT=8080
REGISTRY_PORT=5001

for bin in build/reagent build/devcloud; do
  [ -x "$bin" ] || { echo "run-dev: $bin is missing; run: make build devcloud" >&2; exit 1; }
done
for port in "$ROUTER_PORT" "$REGISTRY_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run-dev: port $port is already in use (another devcloud?)" >&2
    exit 1
  fi
done
mkdir -p "$RUN/agent" "$RUN/devcloud"

build/devcloud serve -router-addr ":$ROUTER_PORT" -registry-addr ":$REGISTRY_PORT" \
  -data "$RUN/devcloud" -device "$DEVICE" >"$RUN/devcloud.log" 2>&1 &
devcloud_pid=$!

stop_devcloud() {
  if kill -0 "$devcloud_pid" 2>/dev/null; then
    kill -TERM "$devcloud_pid" 2>/dev/null || true
    wait "$devcloud_pid" 2>/dev/null || true
  fi
}
trap stop_devcloud EXIT
trap 'exit 130' INT
trap 'exit 143' TERM # until the agent runs

# Wait until both listeners accept connections (devcloud prints its banner
# once they do).
for _ in $(seq 100); do
  if ! kill -0 "$devcloud_pid" 2>/dev/null; then
    echo "run-dev: devcloud exited; its log ($RUN/devcloud.log):" >&2
    cat "$RUN/devcloud.log" >&2
    exit 1
  fi
  grep -q '^devcloud is up' "$RUN/devcloud.log" 2>/dev/null && break
  sleep 0.1
done
grep -q '^devcloud is up' "$RUN/devcloud.log" || { echo "run-dev: devcloud did not come up; see $RUN/devcloud.log" >&2; exit 1; }

if ! docker info >/dev/null 2>&1; then
  echo "run-dev: warning: the Docker engine${DOCKER_HOST:+ at $DOCKER_HOST} does not answer; apps will not run" >&2
fi

cat <<EOF
devcloud is up: router ws://localhost:$ROUTER_PORT/ws-re-dev, registry localhost:$REGISTRY_PORT (log: $RUN/devcloud.log)
starting the agent (log: $RUN/agent/reagent.log${DOCKER_HOST:+, DOCKER_HOST=$DOCKER_HOST}); Ctrl-C stops both.

try, in another terminal:
  build/devcloud studio devices
  build/devcloud studio push-image --key 1 --name demo --version 1.0.0 --busybox
  build/devcloud studio request $SERIAL --key 1 --name demo --stage PROD --target RUNNING --version 1.0.0
  build/devcloud studio apps $SERIAL
  build/devcloud studio logs $SERIAL prod_1_demo
  build/devcloud studio call $SERIAL get_agent_metadata

EOF

# The agent runs as a child we wait for, so that Ctrl-C (or a TERM sent to
# this script alone) stops it gracefully, and the EXIT trap then stops
# devcloud.
# shellcheck disable=SC2086 # REAGENT_FLAGS is a list of flags
build/reagent -config "$DEVICE" -agentDir "$RUN/agent" -logFile "$RUN/agent/reagent.log" \
  -prettyLogging -env local -update=false ${REAGENT_FLAGS:-} &
agent_pid=$!
stop_agent() { kill -TERM "$agent_pid" 2>/dev/null || true; }
trap stop_agent INT TERM
status=0
while kill -0 "$agent_pid" 2>/dev/null; do
  # wait returns early (>128) when a trapped signal arrives; keep waiting
  # until the agent has really exited.
  wait "$agent_pid" && status=0 || status=$?
done
echo "run-dev: the agent exited ($status); stopping devcloud"
exit "$status"
