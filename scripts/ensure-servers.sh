#!/usr/bin/env bash
# Makes sure PostgreSQL and RabbitMQ answer on this machine, starting them if they are installed
# but down. Servers named elsewhere (TEST_DATABASE_URL / TEST_AMQP_URL on another host) are left
# to whoever runs them; the test fixtures report them if they do not answer.
set -euo pipefail

answers() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

wait_for() {  # name host port seconds
  local deadline=$((SECONDS + $4))
  until answers "$2" "$3"; do
    if ((SECONDS >= deadline)); then
      echo "$1 did not come up on $2:$3" >&2
      return 1
    fi
    sleep 1
  done
}

is_local() { [[ -z "${1:-}" || "$1" == *"127.0.0.1"* || "$1" == *"localhost"* ]]; }

if is_local "${TEST_DATABASE_URL:-}" && ! answers 127.0.0.1 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "starting PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_for PostgreSQL 127.0.0.1 5432 60
  else
    echo "PostgreSQL is not answering on 127.0.0.1:5432 and is not installed here" >&2
  fi
fi

if is_local "${TEST_AMQP_URL:-}" && ! answers 127.0.0.1 5672; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "starting RabbitMQ" >&2
    rabbitmq-server -detached || true
    wait_for RabbitMQ 127.0.0.1 5672 120
  else
    echo "RabbitMQ is not answering on 127.0.0.1:5672 and is not installed here" >&2
  fi
fi
