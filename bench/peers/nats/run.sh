#!/usr/bin/env bash
# Copied from ../shared/peers/nats/run.sh (written by this project for the peer comparison of issue 11);
# changed for bench/peers: ports (client 14322-4, cluster 16322-4, monitor 18322-4, standalone 14330), base dir,
# STANDALONE=0 skips the standalone server.
# NATS JetStream peer benchmark, one command:
#   nats/run.sh [REPS=3] [COUNT=200000]          (env: MODES="js raw" SIZES="100 1024" REPLICAS="3 1" STANDALONE=1)
# 1. starts a 3-node JetStream cluster on 127.0.0.1 (client 14322-14324, cluster 16322-16324,
#    monitor 18322-18324, stores /tmp/rill-peers-nats/nN), runs bench.mjs for
#    R3 and R1 streams x 100 B / 1 KiB payloads x publish modes x REPS, stops the cluster by PID;
# 2. starts one standalone (non-clustered) JetStream server on 127.0.0.1:14330 and runs R1 x sizes
#    x REPS, stops it by PID.
# Results: results/nats.jsonl (one JSON line per run), server logs in /tmp/rill-peers-nats/.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
REPS=${1:-3}
COUNT=${2:-200000}
MODES=${MODES:-"js raw"}   # js = js.publish(); raw = nc.publish()+reply inbox (see bench.mjs)
SIZES=${SIZES:-"100 1024"}
BASE=/tmp/rill-peers-nats
OUT="${PEERS_RESULTS:-/tmp/rill-peers-results}/nats.jsonl"
NATS_SERVER=${NATS_SERVER:-/usr/sbin/nats-server}
mkdir -p "${PEERS_RESULTS:-/tmp/rill-peers-results}"
: > "$OUT"

PIDS=()
stop_servers() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "pid $pid still alive, SIGKILL" >&2; kill -KILL "$pid" || true; fi
  done
  PIDS=()
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

wait_healthy() { # monitor ports...
  local p
  for p in "$@"; do
    for i in $(seq 1 150); do
      if curl -sf --max-time 1 "http://127.0.0.1:$p/healthz" >/dev/null; then break; fi
      if [ "$i" = 150 ]; then echo "server on monitor port $p not healthy after 30s" >&2; exit 1; fi
      sleep 0.2
    done
  done
}

conf() { # name client_port monitor_port cluster_port|"" -> config on stdout
  local name=$1 cp=$2 mp=$3 clp=$4
  cat <<EOF
server_name: $name
listen: 127.0.0.1:$cp
http: 127.0.0.1:$mp
jetstream {
  store_dir: "$BASE/$name"
  max_memory_store: 1GB
  max_file_store: 40GB
}
EOF
  if [ -n "$clp" ]; then cat <<EOF
cluster {
  name: benchc
  listen: 127.0.0.1:$clp
  no_advertise: true
  routes: [ nats-route://127.0.0.1:16322, nats-route://127.0.0.1:16323, nats-route://127.0.0.1:16324 ]
}
EOF
  fi
}

start() { # name client_port monitor_port cluster_port|""
  conf "$@" > "$BASE/$1.conf"
  "$NATS_SERVER" -c "$BASE/$1.conf" > "$BASE/$1.log" 2>&1 &
  PIDS+=($!)
  echo "started $1 pid $! ($BASE/$1.conf)" >&2
}

bench() { # label servers replicas size rep mode
  local line
  line=$(timeout 400 node "$HERE/bench.mjs" --label "$1" --servers "$2" --replicas "$3" --size "$4" --mode "$6" \
    --count "$COUNT" --window 1000 --lat-count 3000 --pids "$(IFS=,; echo "${PIDS[*]}")" --max-seconds 300)
  node -e 'const [rep,l]=process.argv.slice(1);const o=JSON.parse(l);o.rep=+rep;console.log(JSON.stringify(o))' "$5" "$line" | tee -a "$OUT"
}

"$NATS_SERVER" --version >&2
# ---------- 3-node cluster
rm -rf "$BASE"; mkdir -p "$BASE"
start n1 14322 18322 16322
start n2 14323 18323 16323
start n3 14324 18324 16324
wait_healthy 18322 18323 18324
CL=n1=127.0.0.1:14322,n2=127.0.0.1:14323,n3=127.0.0.1:14324
for rep in $(seq 1 "$REPS"); do
  for r in ${REPLICAS:-3 1}; do
    for size in $SIZES; do for mode in $MODES; do bench cluster "$CL" "$r" "$size" "$rep" "$mode"; done; done
  done
done
stop_servers
rm -rf "$BASE"/n1 "$BASE"/n2 "$BASE"/n3
[ "${STANDALONE:-1}" = 1 ] || { echo "wrote $OUT" >&2; exit 0; }

# ---------- standalone single server
rm -rf "$BASE"; mkdir -p "$BASE"
start s1 14330 18330 ""
wait_healthy 18330
for rep in $(seq 1 "$REPS"); do
  for size in $SIZES; do for mode in $MODES; do bench standalone s1=127.0.0.1:14330 1 "$size" "$rep" "$mode"; done; done
done
stop_servers
rm -rf "$BASE"/s1 "$BASE"/n1 "$BASE"/n2 "$BASE"/n3
echo "wrote $OUT" >&2
