#!/usr/bin/env bash
# bench/peers/setup.sh — what `npm run bench:peers` needs besides rill, installed only when missing:
#  - Debian packages nats-server and rabbitmq-server (root; apt-get), the Debian service stopped if apt started it;
#  - the peers' npm clients in a side directory ($RILL_PEERS_DEPS, default /tmp/rill-peers-deps), NOT in the
#    project's package.json: they are not dependencies of rill (the project allows only a short list), and
#    `npm ci` should not download three brokers' clients for everyone. Versions pinned: the ones measured.
# Adapted from ../shared/peers/setup.sh (written by this project for issue 11).
set -euo pipefail
DEPS=${RILL_PEERS_DEPS:-/tmp/rill-peers-deps}
need_apt=()
[ -x /usr/sbin/nats-server ] || need_apt+=(nats-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
if [ "${#need_apt[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "bench:peers needs ${need_apt[*]}: run 'sudo apt-get install ${need_apt[*]}'" >&2; exit 1; }
  echo "[bench:peers] apt-get install ${need_apt[*]}" >&2
  apt-get install -y -q "${need_apt[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${need_apt[@]}" >&2; }
  # apt may start Debian's own broker (ports 5672/25672/4369, not ours): it only costs CPU here
  if command -v systemctl >/dev/null && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
    systemctl stop rabbitmq-server || true; systemctl disable rabbitmq-server || true
  fi
fi
if [ ! -d "$DEPS/node_modules/nats" ] || [ ! -d "$DEPS/node_modules/amqplib" ] || [ ! -d "$DEPS/node_modules/rabbitmq-stream-js-client" ]; then
  mkdir -p "$DEPS"
  echo "[bench:peers] npm clients into $DEPS" >&2
  [ -f "$DEPS/package.json" ] || echo '{"name":"rill-peers-deps","private":true}' > "$DEPS/package.json"
  (cd "$DEPS" && npm install --no-audit --no-fund --silent nats@2.29.3 amqplib@2.3.1 rabbitmq-stream-js-client@1.0.0 >&2)
fi
