#!/usr/bin/env bash
# A throwaway PostgreSQL server for the registry tests (tests/registry), on 127.0.0.1 only.
#
#   scripts/test-postgres.sh start [STATE]   start a new cluster; print its SQLAlchemy URL
#   scripts/test-postgres.sh stop  [STATE]   stop that cluster and delete its files
#
# STATE (default: ${TMPDIR:-/tmp}/bonecast-test-postgres.state) records the cluster's folder so
# that `stop` finds it. As root on Debian, a missing server is installed from Debian's packages
# (`apt-get update` runs only when the package is not known yet); the cluster then belongs to the
# `postgres` user. As another user the cluster is that user's, and PostgreSQL must be installed.
# Authentication is `trust` on 127.0.0.1: the server is for tests only, never for patient data.
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin  # runuser

command_name=${1:-}
state=${2:-${TMPDIR:-/tmp}/bonecast-test-postgres.state}
database=bonecast_test

die() { echo "test-postgres: $*" >&2; exit 1; }

pg_bin() {  # the folder holding initdb and pg_ctl (Debian keeps them off PATH)
    local found
    if found=$(command -v initdb 2>/dev/null) && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$found")"
        return
    fi
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $found && -x $found/initdb ]] && echo "$found"
}

install_postgres() {
    [[ $EUID -eq 0 ]] || die "PostgreSQL is not installed; install it (apt-get install postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show postgresql >/dev/null 2>&1; then
        apt-get update -qq >&2
    fi
    apt-get install -y -qq postgresql >&2
}

as_owner() {  # run a command as the cluster's owner
    if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local bin dir port
    bin=$(pg_bin) || { install_postgres; bin=$(pg_bin) || die "initdb not found after install"; }
    if [[ -e $state ]]; then  # left by a run that did not stop its server
        dir=$(cat "$state")
        if [[ -d $dir/data ]] && as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
            die "a server recorded in $state is still running; stop it first ($0 stop)"
        fi
        rm -rf -- "$dir" "$state"
    fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/bonecast-pg.XXXXXX")
    echo "$dir" >"$state"
    [[ $EUID -ne 0 ]] || chown postgres: "$dir"
    port=$(free_port)
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" >/dev/null \
        || { cat "$dir/server.log" >&2; die "the server did not start"; }
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$database"
    echo "postgresql+psycopg://postgres@127.0.0.1:$port/$database"
}

stop() {
    [[ -e $state ]] || { echo "test-postgres: no server recorded in $state" >&2; return 0; }
    local bin dir
    dir=$(cat "$state")
    bin=$(pg_bin) || die "pg_ctl not found"
    if [[ -d $dir/data ]]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf -- "$dir" "$state"
}

case $command_name in
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 start|stop [STATE]" ;;
esac
