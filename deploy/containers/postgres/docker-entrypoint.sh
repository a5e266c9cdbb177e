#!/bin/bash
# The postgres:16 stand-in's entrypoint (deploy/containers/container-build.sh builds the image from
# Debian bookworm's PostgreSQL 15): as much of the official image's contract as the compose files
# use. On an empty $PGDATA: initdb with POSTGRES_USER (default postgres) and the password from
# POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (required: no trust by default), POSTGRES_DB
# created (default: the user's name), password logins (scram-sha-256) from anywhere. Then
# postgres as the postgres user, listening on 5432 on every interface; SIGINT stops it (fast).
set -euo pipefail

# As the official image: options alone go to postgres, another command runs as it is, and
# postgres --version (or --help, -C ...) answers without initializing anything.
if [[ $# == 0 || $1 == -* ]]; then set -- postgres "$@"; fi
if [[ $1 != postgres ]]; then exec "$@"; fi
shift
for arg in "$@"; do
  case $arg in -V | --version | -'?' | --help | -C | --describe-config) exec postgres "$@" ;; esac
done

PGDATA=${PGDATA:-/var/lib/postgresql/data}
if [[ -n ${POSTGRES_PASSWORD_FILE:-} ]]; then
  [[ -z ${POSTGRES_PASSWORD:-} ]] || { echo "error: POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are both set" >&2; exit 1; }
  POSTGRES_PASSWORD=$(<"$POSTGRES_PASSWORD_FILE")
fi
user=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$user}

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

if [[ $(id -u) == 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  if [[ -z ${POSTGRES_PASSWORD:-} ]]; then
    echo "error: the database is uninitialized and no password is set: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  chown postgres "$pwfile"
  as_postgres initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  printf '%s\n' "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [[ $database != postgres ]]; then
    quoted=${database//\"/\"\"}
    if ! out=$(echo "CREATE DATABASE \"$quoted\";" | as_postgres postgres --single -D "$PGDATA" postgres 2>&1); then
      echo "$out" >&2
      exit 1
    fi
  fi
  echo "postgres stand-in: initialized $PGDATA (user $user, database $database)"
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" \
  -c listen_addresses='*' -c port=5432 -c unix_socket_directories=/var/run/postgresql "$@"
