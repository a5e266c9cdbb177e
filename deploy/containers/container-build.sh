#!/usr/bin/env bash
# container-build.sh: make the project's Dockerfile and compose files build and run on a machine
# that reaches NO container registry (only Debian's apt mirror, PyPI and npm), as root, with no
# systemd and a hybrid cgroup (v1 controllers + an empty cgroup2 "unified" mount). A copy of
# ../shared/containers/container-build.sh, extended with a postgres:16 stand-in for
# docker-compose.production.yml; tests/containers/run.sh drives it in CI (docs/containers.md).
#
# What it does (each step is idempotent; run the whole thing or one step):
#   deps      apt: docker.io (dockerd 20.10 + containerd + runc), docker-compose (v1, Python),
#             mmdebstrap (builds Debian root filesystems from the apt mirror)
#   daemon    starts dockerd by hand (no systemd here), logs and PID file in $STATE_DIR
#   images    builds Debian bookworm rootfs tarballs with mmdebstrap and imports them under
#             the names the project asks for, so nothing is pulled:
#               python:3.11-slim  Debian's Python 3.11 + a venv at /opt/venv first on PATH
#               nginx:1.27        Debian's nginx-light (1.22), logs to stdout/stderr
#               postgres:16       Debian's PostgreSQL 15 + deploy/containers/postgres (the
#                                 official image's POSTGRES_* contract, pg_isready)
#   build     docker-compose build in the project (the Dockerfile is used unchanged); the
#             compose file is COMPOSE_FILE's (default docker-compose.yml)
#   up        docker-compose up -d, then waits for /healthz through nginx
#   smoke     curl /healthz and POST /provision (server key and CSR) through nginx (port 8000)
#   local     the image alone in local mode (docker run), /healthz + POST /provision, removed after
#   down      docker-compose down -v
#   stop      down, then stops the dockerd this script started (by its PID file)
#   setup = deps daemon images      check = build up smoke down      all = setup check (default)
#
# Usage: PROJECT_DIR=path/to/checkout bash container-build.sh [step ...]
#   PROJECT_DIR defaults to the current directory. Timings seen on a 2-core machine of this kind:
#   deps 15 s, images ~85 s (python 48 s, nginx 33 s) + postgres, build 35 s, up to healthy ~10 s.
set -euo pipefail

PROJECT_DIR=${PROJECT_DIR:-$PWD}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_DIR=${STATE_DIR:-${TMPDIR:-/tmp}/container-build}  # rootfs tarballs, dockerd log + PID
SUITE=${SUITE:-bookworm}              # bookworm's python3 is 3.11, matching the python:3.11 tag
# The Debian mirrors apt on this host already uses (first URIs of the deb822 sources, or sources.list).
apt_uri() {  # $1: a pattern the URI must match (security or not); prints nothing when none does
  { cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    cat /etc/apt/sources.list 2>/dev/null || true; } |
    awk -v re="$1" '($1 == "URIs:" || $1 == "deb") && $2 ~ re {print $2; exit}'
}
MIRROR=${MIRROR:-$(apt_uri '/debian/?$')}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(apt_uri 'security')}
[[ -n $MIRROR && -n $SECURITY_MIRROR ]] || { echo "set MIRROR and SECURITY_MIRROR (apt sources not found)" >&2; exit 1; }
PY_TAG=${PY_TAG:-python:3.11-slim}    # must equal the Dockerfile's FROM
NGINX_TAG=${NGINX_TAG:-nginx:1.27}    # must equal docker-compose.yml's nginx image
POSTGRES_TAG=${POSTGRES_TAG:-postgres:16}  # must equal docker-compose.production.yml's postgres image
SERVICE_IMAGE=${SERVICE_IMAGE:-iot-provisioner:latest}  # the compose files' `image:` of the service
FORCE_IMAGES=${FORCE_IMAGES:-0}       # 1: rebuild the base images even if they exist
DOCKERD_ARGS=${DOCKERD_ARGS:-}        # e.g. "--storage-driver vfs" where overlay2 fails
# The bootstrap admin key the compose files take from PROVISIONER_API_KEYS: random unless given
# (the service refuses an example's placeholder such as change-me-...).
API_KEY=${API_KEY:-${PROVISIONER_API_KEYS:-$(openssl rand -hex 24 2>/dev/null || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}}
export PROVISIONER_API_KEYS=$API_KEY
NGINX_URL=${NGINX_URL:-http://127.0.0.1:8000}         # nginx's published port in docker-compose.yml
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-iotprov}

mkdir -p "$STATE_DIR"
log() { printf '[container-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

compose() {
  # Compose v2 (a docker CLI plugin) where it exists; Debian bookworm only has v1 (docker-compose).
  if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}

step_deps() {
  # One apt-get update, then only what is missing. --no-install-recommends keeps out
  # cgroupfs-mount, apparmor and the like, which are not needed here.
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # docker.io brings its own 20.10 client in /usr/bin; a newer client earlier on PATH (28.x seen
  # here) also works with this daemon (API negotiation) but has no buildx, so `docker build`
  # uses the legacy builder and prints a deprecation notice. Both build this Dockerfile.
  log "deps: $(dockerd --version), $(docker-compose version --short 2>/dev/null || true), mmdebstrap $(mmdebstrap --version | awk '{print $2}')"
}

step_daemon() {
  if docker info >/dev/null 2>&1; then log "daemon: already running"; return; fi
  # No systemd as PID 1 on this kind of machine, so `systemctl start docker` does nothing:
  # start dockerd by hand. It starts its own containerd and uses runc with the cgroupfs driver
  # on cgroup v1, which works with this hybrid layout (crun under podman did not).
  # Networking: the default bridge + iptables NAT; containers get the host's resolver from
  # /etc/resolv.conf (a non-loopback address here), so pip inside `docker build` reaches PyPI
  # exactly as the host does. (Were the host's resolver on 127.0.0.x, add --dns to DOCKERD_ARGS.)
  log "daemon: starting dockerd ${DOCKERD_ARGS}"
  # shellcheck disable=SC2086
  nohup dockerd $DOCKERD_ARGS >"$STATE_DIR/dockerd.log" 2>&1 &
  echo $! >"$STATE_DIR/dockerd.pid"
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && { log "daemon: up (PID $(cat "$STATE_DIR/dockerd.pid"))"; return; }
    sleep 0.5
  done
  tail -20 "$STATE_DIR/dockerd.log" >&2
  die "dockerd did not answer within 30 s (log: $STATE_DIR/dockerd.log)"
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

mmdebstrap_sources() {
  printf '%s\n' "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY_MIRROR $SUITE-security main"
}

# Common mmdebstrap options: minbase (Essential + apt), no man pages / docs / locales.
MMDEB_COMMON=(--variant=minbase
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*')

# Extra CA certificates of the host (a TLS-intercepting proxy on this kind of machine re-signs TLS to PyPI with
# its own CA). Without them in the image, `pip install .` inside `docker build` fails with
# "No matching distribution found" (certificate verify failed). Copied only if there are any.
CA_HOOK='if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/";
  chroot "$1" update-ca-certificates >/dev/null; fi'

step_images() {
  local sources
  mapfile -t sources < <(mmdebstrap_sources)

  if [[ $FORCE_IMAGES == 1 ]] || ! have_image "$PY_TAG"; then
    # python:3.11-slim stand-in. The real image has CPython in /usr/local with a pip that
    # installs system-wide. Debian's python3 is in /usr/bin and its pip refuses system installs
    # (PEP 668, "externally-managed-environment"), so the Dockerfile's plain `RUN pip install .`
    # would fail on a bare Debian image. A venv at /opt/venv put first on PATH gives `python`,
    # `pip` and installed console scripts (gunicorn) exactly where an unchanged Dockerfile,
    # HEALTHCHECK and compose `command:` look for them, readable by the non-root user.
    # passwd: the Dockerfile calls useradd (not in minbase). netbase/tzdata: as the real image.
    log "images: mmdebstrap $SUITE -> $PY_TAG"
    mmdebstrap "${MMDEB_COMMON[@]}" \
      --include=python3,python3-venv,python-is-python3,ca-certificates,passwd,netbase,tzdata \
      --customize-hook="$CA_HOOK" \
      --customize-hook='chroot "$1" python3 -m venv /opt/venv' \
      "$SUITE" "$STATE_DIR/python-rootfs.tar" "${sources[@]}" >"$STATE_DIR/mmdebstrap-python.log" 2>&1 \
      || { tail -20 "$STATE_DIR/mmdebstrap-python.log" >&2; die "mmdebstrap (python)"; }
    docker import \
      --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["python3"]' \
      "$STATE_DIR/python-rootfs.tar" "$PY_TAG" >/dev/null
    rm -f "$STATE_DIR/python-rootfs.tar"
  fi
  log "images: $PY_TAG = $(docker run --rm "$PY_TAG" sh -c 'python --version; pip --version | cut -d" " -f1-2' | tr '\n' ' ')"

  if [[ $FORCE_IMAGES == 1 ]] || ! have_image "$NGINX_TAG"; then
    # nginx:1.27 stand-in: Debian's nginx-light (1.22.1; proxy, upstream keepalive, return:
    # all the compose config uses). Logs go to the container's stdout/stderr as in the real image.
    log "images: mmdebstrap $SUITE -> $NGINX_TAG"
    mmdebstrap "${MMDEB_COMMON[@]}" \
      --include=nginx-light,ca-certificates,tzdata \
      --customize-hook='ln -sf /dev/stdout "$1/var/log/nginx/access.log"; ln -sf /dev/stderr "$1/var/log/nginx/error.log"' \
      "$SUITE" "$STATE_DIR/nginx-rootfs.tar" "${sources[@]}" >"$STATE_DIR/mmdebstrap-nginx.log" 2>&1 \
      || { tail -20 "$STATE_DIR/mmdebstrap-nginx.log" >&2; die "mmdebstrap (nginx)"; }
    docker import "$STATE_DIR/nginx-rootfs.tar" local/debian-nginx:"$SUITE" >/dev/null
    rm -f "$STATE_DIR/nginx-rootfs.tar"
    # `docker import --change` refuses STOPSIGNAL, so the image config is finished by a build.
    printf '%s\n' "FROM local/debian-nginx:$SUITE" \
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      'EXPOSE 80' 'STOPSIGNAL SIGQUIT' 'CMD ["nginx", "-g", "daemon off;"]' \
      | docker build -q -t "$NGINX_TAG" - >/dev/null
  fi
  log "images: $NGINX_TAG = $(docker run --rm "$NGINX_TAG" nginx -v 2>&1)"

  if [[ $FORCE_IMAGES == 1 ]] || ! have_image "$POSTGRES_TAG"; then
    # postgres:16 stand-in: bookworm has PostgreSQL 15, which serves everything the service uses.
    # No cluster is made at install (createcluster.d): the entrypoint makes one in the volume on
    # first start, as the official image does. util-linux's setpriv drops root (gosu's role).
    log "images: mmdebstrap $SUITE -> $POSTGRES_TAG"
    mmdebstrap "${MMDEB_COMMON[@]}" \
      --include=postgresql-15,postgresql-client-15,ca-certificates,tzdata \
      --setup-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/no-main-cluster.conf"' \
      "$SUITE" "$STATE_DIR/postgres-rootfs.tar" "${sources[@]}" >"$STATE_DIR/mmdebstrap-postgres.log" 2>&1 \
      || { tail -20 "$STATE_DIR/mmdebstrap-postgres.log" >&2; die "mmdebstrap (postgres)"; }
    docker import "$STATE_DIR/postgres-rootfs.tar" local/debian-postgresql:"$SUITE" >/dev/null
    rm -f "$STATE_DIR/postgres-rootfs.tar"
    docker build -q -t "$POSTGRES_TAG" "$SCRIPT_DIR/postgres" >/dev/null
  fi
  log "images: $POSTGRES_TAG = $(docker run --rm "$POSTGRES_TAG" postgres --version)"
}

step_build() {
  cd "$PROJECT_DIR"
  [[ -f Dockerfile && -f ${COMPOSE_FILE:-docker-compose.yml} ]] || die "no Dockerfile/${COMPOSE_FILE:-docker-compose.yml} in $PROJECT_DIR"
  # Never --pull: it would ask Docker Hub for python:3.11-slim and fail. The default build
  # finds the local tag. The build's RUN steps use the default bridge network (NAT through the
  # host), which reaches PyPI; if it did not, build with --network host.
  local t0=$SECONDS
  compose build >"$STATE_DIR/compose-build.log" 2>&1 \
    || { tail -30 "$STATE_DIR/compose-build.log" >&2; die "compose build"; }
  log "build: $((SECONDS - t0)) s; $SERVICE_IMAGE $(docker image inspect -f '{{.Size}}' "$SERVICE_IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}')"
}

wait_healthz() {
  local url=$1
  for _ in $(seq 60); do
    curl -fsS -m 2 -o /dev/null "$url/healthz" 2>/dev/null && return 0
    sleep 1
  done
  return 1
}

step_up() {
  cd "$PROJECT_DIR"
  local t0=$SECONDS
  compose up -d
  wait_healthz "$NGINX_URL" || { compose logs --no-color | tail -40 >&2; die "no /healthz through nginx"; }
  log "up: /healthz answers through nginx after $((SECONDS - t0)) s"
  compose ps
}

provision_checks() {  # $1: base URL, $2: API key, $3: a label
  local base=$1 key=$2 label=$3 code csr
  code=$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")
  [[ $code == 200 ]] || die "$label: GET /healthz -> $code"
  log "$label: GET /healthz -> 200"
  code=$(curl -s -o "$STATE_DIR/provision.json" -w '%{http_code}' -X POST "$base/provision" \
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d "{\"templateName\": \"demo\", \"parameters\": {\"SerialNumber\": \"SN-$RANDOM$RANDOM\"}}")
  [[ $code == 201 ]] || { cat "$STATE_DIR/provision.json" >&2; die "$label: POST /provision -> $code"; }
  log "$label: POST /provision (server key) -> 201 $(cut -c1-60 "$STATE_DIR/provision.json")..."
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$STATE_DIR/device.key" \
    -subj /CN=device -out "$STATE_DIR/device.csr" 2>/dev/null
  csr=$(awk 'BEGIN{ORS="\\n"} {print}' "$STATE_DIR/device.csr")
  code=$(curl -s -o "$STATE_DIR/provision.json" -w '%{http_code}' -X POST "$base/provision" \
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d "{\"templateName\": \"demo\", \"parameters\": {\"SerialNumber\": \"SN-$RANDOM$RANDOM\"}, \"csr\": \"$csr\"}")
  [[ $code == 201 ]] || { cat "$STATE_DIR/provision.json" >&2; die "$label: POST /provision with CSR -> $code"; }
  log "$label: POST /provision (CSR) -> 201"
}

step_smoke() {
  provision_checks "$NGINX_URL" "$API_KEY" "compose (through nginx)"
  # nginx refuses a body over 65536 bytes itself (413), before gunicorn sees it.
  local code
  code=$(head -c 70000 /dev/zero | tr '\0' a | curl -s -o /dev/null -w '%{http_code}' -X POST \
    "$NGINX_URL/provision" -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' --data-binary @-)
  log "compose (through nginx): 70000-byte body -> $code (413 expected)"
}

step_local() {
  # The image alone, as a user runs it: `docker run IMAGE`, local mode (no PROVISIONER_IOT_ENDPOINT:
  # gunicorn's master starts the emulator itself), nothing else set. LOCAL_ENV adds -e options.
  cd "$PROJECT_DIR"
  local image=$SERVICE_IMAGE port=${LOCAL_PORT:-18000} key
  have_image "$image" || step_build
  docker rm -f iotprov-local >/dev/null 2>&1 || true
  # shellcheck disable=SC2086  # LOCAL_ENV is a list of -e options
  docker run -d --name iotprov-local -p "127.0.0.1:$port:8000" ${LOCAL_ENV:-} "$image" >/dev/null
  wait_healthz "http://127.0.0.1:$port" || { docker logs iotprov-local | tail -30 >&2; die "local mode: no /healthz"; }
  key=$(docker logs iotprov-local 2>&1 | grep -o 'Bearer [A-Za-z0-9_-]*' | head -1 | cut -d' ' -f2)
  provision_checks "http://127.0.0.1:$port" "$key" "local mode (docker run)"
  docker rm -f iotprov-local >/dev/null
}

step_down() {
  cd "$PROJECT_DIR"
  docker info >/dev/null 2>&1 || return 0
  compose down -v --remove-orphans || true
}

step_stop() {
  step_down
  # Only the dockerd this script started (its PID file), never by name.
  if [[ -f $STATE_DIR/dockerd.pid ]]; then
    local pid
    pid=$(cat "$STATE_DIR/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
      log "stop: dockerd PID $pid"
      kill -TERM "$pid"
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
    rm -f "$STATE_DIR/dockerd.pid"
  fi
}

steps=("$@")
((${#steps[@]})) || steps=(all)
for s in "${steps[@]}"; do
  case $s in
    setup) step_deps; step_daemon; step_images ;;
    check) step_build; step_up; step_smoke; step_down ;;
    all) step_deps; step_daemon; step_images; step_build; step_up; step_smoke; step_down ;;
    deps | daemon | images | build | up | smoke | local | down | stop) "step_$s" ;;
    *) die "unknown step '$s' (deps daemon images build up smoke local down stop setup check all)" ;;
  esac
done
