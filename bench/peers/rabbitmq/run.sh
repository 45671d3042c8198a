#!/usr/bin/env bash
# Copied from ../shared/peers/rabbitmq/run.sh (written by this project for the peer comparison of issue 11);
# changed for bench/peers: ports (epmd 14469, AMQP 15801-3, stream 15811-3, dist 25801-3), base dir, deps dir.
# RabbitMQ 3.10 peer benchmark, one command:
#   rabbitmq/run.sh [REPS=3]
#   env: MODES="stream subentry quorum"  SIZES="100 1024"  REPLICAS="3"
#        COUNT_100=200000 COUNT_1024=100000 (COUNT=<n> overrides both)
#        WINDOW_STREAM=10000 WINDOW_QUORUM=1000  LAT_COUNT=3000  OUT=<jsonl path>
#        ERL_EXTRA="+sbwt none +sbwtdcpu none +sbwtdio none"  (set ERL_EXTRA= for Erlang defaults)
# 1. starts a private epmd (127.0.0.1:14469) and 3 rabbitmq-server processes on 127.0.0.1
#    (nodes rabbit1..3@localhost; AMQP 15801-15803, stream protocol 15811-15813, Erlang distribution
#    25801-25803, CLI distribution 25810-25830; data+logs under /tmp/rill-peers-rmq/rabbitN, cookie
#    /tmp/rill-peers-rmq/.erlang.cookie), joins rabbit2/3 to rabbit1 with rabbitmqctl;
# 2. runs bench.mjs for every MODES x SIZES x REPLICAS x REPS (one JSON line each -> OUT,
#    default results/rabbitmq.jsonl, truncated first);
# 3. stops the servers and epmd by the PIDs it started (TERM, KILL after 30 s) and deletes the data dirs
#    (logs stay in /tmp/rill-peers-rmq/rabbitN/log).
# Needs: bench/peers/setup.sh (apt rabbitmq-server + npm amqplib, rabbitmq-stream-js-client in $RILL_PEERS_DEPS).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
REPS=${1:-3}
MODES=${MODES:-"stream subentry quorum"}
SIZES=${SIZES:-"100 1024"}
REPLICAS=${REPLICAS:-3}
COUNT_100=${COUNT_100:-${COUNT:-200000}}
COUNT_1024=${COUNT_1024:-${COUNT:-100000}}
WINDOW_STREAM=${WINDOW_STREAM:-10000}   # un-confirmed messages in flight (stream client convention: 10k)
WINDOW_QUORUM=${WINDOW_QUORUM:-1000}    # un-confirmed publishes in flight (as NATS run)
LAT_COUNT=${LAT_COUNT:-3000}
ERL_EXTRA=${ERL_EXTRA-"+sbwt none +sbwtdcpu none +sbwtdio none"}
OUT=${OUT:-${PEERS_RESULTS:-/tmp/rill-peers-results}/rabbitmq.jsonl}
RMQ_BIN=${RMQ_BIN:-/usr/lib/rabbitmq/bin}   # the real scripts; /usr/sbin/* wrappers would su to user rabbitmq
BASE=/tmp/rill-peers-rmq
EPMD_PORT=14469
AMQP_BASE=15800 STREAM_BASE=15810 DIST_BASE=25800
N_NODES=3
mkdir -p "$(dirname "$OUT")"
: > "$OUT"

for bin in rabbitmq-server rabbitmqctl; do
  [ -x "$RMQ_BIN/$bin" ] || { echo "$RMQ_BIN/$bin missing: run bench/peers/setup.sh (apt-get install rabbitmq-server)" >&2; exit 1; }
done
command -v epmd >/dev/null || { echo "epmd missing (erlang-base)" >&2; exit 1; }

count_for() { case "$1" in 100) echo "$COUNT_100" ;; 1024) echo "$COUNT_1024" ;; *) echo "${COUNT:-100000}" ;; esac; }
window_for() { [ "$1" = quorum ] && echo "$WINDOW_QUORUM" || echo "$WINDOW_STREAM"; }

# ---------------------------------------------------------------- process control (by PID only)
PIDS=()        # rabbitmq-server wrapper scripts we started
BEAM_PIDS=()   # their beam.smp children
EPMD_PID=
stop_all() {
  local pid
  # wrapper traps TERM -> TERM to its beam.smp (graceful init:stop()) -> waits for it
  for pid in "${PIDS[@]}" "${BEAM_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${BEAM_PIDS[@]}" "${PIDS[@]}"; do
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "pid $pid still alive after 30 s, SIGKILL" >&2; kill -KILL "$pid" 2>/dev/null || true; fi
  done
  PIDS=(); BEAM_PIDS=()
  if [ -n "$EPMD_PID" ]; then
    kill -TERM "$EPMD_PID" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$EPMD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$EPMD_PID" 2>/dev/null || true   # epmd may ignore TERM
    EPMD_PID=
  fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- environment shared by servers and CLI
# refuse to start (and to wipe $BASE) while an earlier cluster still holds our ports
for p in $EPMD_PORT $((AMQP_BASE+1)) $((AMQP_BASE+2)) $((AMQP_BASE+3)) $((STREAM_BASE+1)) $((STREAM_BASE+2)) \
         $((STREAM_BASE+3)) $((DIST_BASE+1)) $((DIST_BASE+2)) $((DIST_BASE+3)); do
  if ss -ltn 2>/dev/null | grep -qE "[:.]$p\s"; then echo "port $p already in use" >&2; exit 1; fi
done
rm -rf "$BASE"; mkdir -p "$BASE"
export HOME="$BASE"                       # $HOME/.erlang.cookie is read by every node and by rabbitmqctl
head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 > "$BASE/.erlang.cookie"
chmod 400 "$BASE/.erlang.cookie"
export ERL_EPMD_PORT=$EPMD_PORT ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_CTL_DIST_PORT_MIN=$((DIST_BASE + 10)) RABBITMQ_CTL_DIST_PORT_MAX=$((DIST_BASE + 30))
export RABBITMQ_CONF_ENV_FILE="$BASE/rabbitmq-env.conf"   # empty: ignore /etc/rabbitmq/rabbitmq-env.conf
: > "$RABBITMQ_CONF_ENV_FILE"

# a Debian-service broker (started by apt) would use 5672/25672/4369, not our ports; warn only
if ss -ltn 2>/dev/null | grep -qE '[:.](5672|25672)\s'; then
  echo "WARNING: something listens on 5672/25672 (Debian rabbitmq-server service?). It does not clash with" \
       "our ports but takes CPU/RAM: stop it with 'systemctl stop rabbitmq-server' or 'rabbitmqctl stop'." >&2
fi

node_env() { # i -> env assignments for node i (used by server start and rabbitmqctl)
  local i=$1 d="$BASE/rabbit$1"
  echo RABBITMQ_NODENAME="rabbit$i@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT=$((AMQP_BASE + i)) RABBITMQ_DIST_PORT=$((DIST_BASE + i)) \
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log"
}
ctl() { # i args... : rabbitmqctl against node i
  local i=$1; shift
  env $(node_env "$i") "$RMQ_BIN/rabbitmqctl" -n "rabbit$i@localhost" "$@"
}

start_node() { # i
  local i=$1 d="$BASE/rabbit$1"
  mkdir -p "$d/mnesia" "$d/log"
  cat > "$d/rabbitmq.conf" <<EOF
# node rabbit$i@localhost (AMQP port comes from RABBITMQ_NODE_PORT)
stream.listeners.tcp.1 = 127.0.0.1:$((STREAM_BASE + i))
stream.advertised_host = 127.0.0.1
stream.advertised_port = $((STREAM_BASE + i))
# 3 nodes share 23 GiB: keep the sum of memory watermarks below RAM
vm_memory_high_watermark.relative = 0.25
disk_free_limit.absolute = 2GB
log.console = false
log.file.level = info
EOF
  echo '[rabbitmq_stream].' > "$d/enabled_plugins"
  env $(node_env "$i") RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-start_epmd false $ERL_EXTRA" \
    "$RMQ_BIN/rabbitmq-server" > "$d/stdout.log" 2>&1 &
  PIDS+=($!)
  echo "started rabbit$i@localhost pid $! (AMQP $((AMQP_BASE+i)), stream $((STREAM_BASE+i)), dist $((DIST_BASE+i)), $d)" >&2
}

wait_booted() { # i : until epmd knows rabbit$i (cheap poll), then rabbitmqctl await_startup
  local i=$1
  for t in $(seq 1 600); do
    epmd -port "$EPMD_PORT" -names 2>/dev/null | grep -q "^name rabbit$i at port" && break
    kill -0 "${PIDS[$((i-1))]}" 2>/dev/null || { echo "rabbit$i (pid ${PIDS[$((i-1))]}) exited" >&2; t=600; break; }
    sleep 0.2
  done
  if [ "$t" = 600 ] || ! ctl "$i" -q await_startup --timeout 180 >/dev/null; then
    echo "rabbit$i did not boot; tail of $BASE/rabbit$i/stdout.log and log/:" >&2
    tail -20 "$BASE/rabbit$i/stdout.log" >&2 || true
    tail -20 "$BASE/rabbit$i"/log/*.log >&2 || true
    exit 1
  fi
}

# ---------------------------------------------------------------- cluster up
# our own epmd first: any erl/CLI started before it would spawn a detached "epmd -daemon" on this port
epmd -port "$EPMD_PORT" -address 127.0.0.1 > "$BASE/epmd.log" 2>&1 &
EPMD_PID=$!
for _ in $(seq 1 50); do epmd -port "$EPMD_PORT" -names >/dev/null 2>&1 && break; sleep 0.1; done
kill -0 "$EPMD_PID" 2>/dev/null || { echo "epmd on port $EPMD_PORT did not start: $(cat "$BASE/epmd.log")" >&2; exit 1; }
echo "RabbitMQ $(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null), $(erl -noshell -eval 'io:put_chars(erlang:system_info(otp_release)), halt().' 2>/dev/null | sed 's/^/OTP /')" >&2
for i in $(seq 1 $N_NODES); do start_node "$i"; done
for i in $(seq 1 $N_NODES); do wait_booted "$i"; done
for i in $(seq 2 $N_NODES); do
  ctl "$i" -q stop_app
  ctl "$i" -q reset
  ctl "$i" -q join_cluster rabbit1@localhost
  ctl "$i" -q start_app
done
ctl 1 -q await_online_nodes $N_NODES --timeout 120
ctl 1 -q cluster_status --formatter json > "$BASE/cluster_status.json"
node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
  const r=s.running_nodes||[]; console.error("running nodes:", r.join(" "));
  if(r.length!=='"$N_NODES"'){console.error("cluster not formed");process.exit(1)}' "$BASE/cluster_status.json"
# PIDS are the rabbitmq-server sh wrappers (they trap TERM and forward it to the VM); the VM is their
# beam.smp child: use those PIDs for CPU accounting (and for the KILL fallback)
BEAM_PIDS=()
for pid in "${PIDS[@]}"; do
  for c in $(ps -o pid= --ppid "$pid"); do
    [ "$(cat /proc/$c/comm 2>/dev/null)" = beam.smp ] && BEAM_PIDS+=("$c")
  done
done
[ "${#BEAM_PIDS[@]}" = "$N_NODES" ] || { echo "expected $N_NODES beam.smp children, found: ${BEAM_PIDS[*]}" >&2; exit 1; }
echo "wrapper pids ${PIDS[*]}; beam.smp pids ${BEAM_PIDS[*]}" >&2

AMQP=$(for i in $(seq 1 $N_NODES); do printf 'rabbit%s=127.0.0.1:%s,' "$i" $((AMQP_BASE+i)); done); AMQP=${AMQP%,}
STREAMS=$(for i in $(seq 1 $N_NODES); do printf 'rabbit%s=127.0.0.1:%s,' "$i" $((STREAM_BASE+i)); done); STREAMS=${STREAMS%,}

bench() { # mode size replicas rep
  local line count window
  count=$(count_for "$2"); window=$(window_for "$1")
  line=$(timeout 400 node "$HERE/bench.mjs" --mode "$1" --size "$2" --replicas "$3" --count "$count" \
    --window "$window" --lat-count "$LAT_COUNT" --amqp "$AMQP" --streams "$STREAMS" \
    --pids "$(IFS=,; echo "${BEAM_PIDS[*]}")" --label cluster --max-seconds 300) || {
    echo "bench $* failed (rc $?)" >&2; return 0; }
  node -e 'const [rep,l,ex]=process.argv.slice(1);const o=JSON.parse(l);o.rep=+rep;o.erl_extra=ex;console.log(JSON.stringify(o))' \
    "$4" "$line" "$ERL_EXTRA" | tee -a "$OUT" || echo "bench $*: unparsable output: $line" >&2
}

for rep in $(seq 1 "$REPS"); do
  for r in $REPLICAS; do
    for size in $SIZES; do for mode in $MODES; do bench "$mode" "$size" "$r" "$rep"; done; done
  done
done

stop_all
rm -rf "$BASE"/rabbit*/mnesia
echo "wrote $OUT ($(wc -l < "$OUT") runs); logs in $BASE/rabbit*/log" >&2
# medians per config (stderr)
node -e '
const rows=require("fs").readFileSync(process.argv[1],"utf8").split("\n").filter(Boolean).map(JSON.parse);
const med=(v)=>{v=v.filter((x)=>typeof x==="number").sort((a,b)=>a-b);return v.length?v[v.length>>1]:"-"};
const g={};for(const r of rows)(g[`${r.mode} R${r.replicas} ${r.size} B`]??=[]).push(r);
console.error("config | n | pub msgs/s | pub MB/s | ack p50 ms | consume msgs/s | seq p50 ms | all verified");
for(const[k,rs]of Object.entries(g))console.error([k,rs.length,med(rs.map(r=>r.pub_msgs_per_s)),med(rs.map(r=>r.pub_MBps)),
  med(rs.map(r=>r.ack_ms_p50)),med(rs.map(r=>r.con_msgs_per_s)),med(rs.map(r=>r.seq_ack_ms_p50)),rs.every(r=>r.verify_ok)].join(" | "));
' "$OUT" || true
