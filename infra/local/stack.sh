#!/usr/bin/env bash
# shellcheck disable=SC2030,SC2031  # with_pg_tls swaps the pg_* globals in a subshell, on purpose
# Local service stack without Docker: PostgreSQL 15, Redis 7, a single-node
# Apache Kafka (KRaft, broker+controller in one JVM), an S3 endpoint (the moto
# server from .venv, for the data lake and the backups) and a MongoDB-protocol
# document store (FerretDB on the PostgreSQL above, standing in for Amazon
# DocumentDB), all bound to 127.0.0.1.
# Next to the plaintext endpoints the application uses by default, secured ones:
# a TLS-only PostgreSQL (pg-tls), a TLS + AUTH Redis (redis-tls) and a SASL_SSL
# (SCRAM-SHA-512) Kafka listener, with certificates of a local CA made by openssl.
#
#   infra/local/stack.sh up     [SERVICE ...]          start (idempotent)
#   infra/local/stack.sh down   [SERVICE ...]          stop, leaving no process behind
#   infra/local/stack.sh status                        exit 0 if all up, else 3
#   infra/local/stack.sh logs   SERVICE [-f]           tail a service log
#   infra/local/stack.sh env    [secure]               eval "$(infra/local/stack.sh env)"
#   infra/local/stack.sh kafka-topics ARGS...          org.apache.kafka.tools.TopicCommand
#
# SERVICE: pg | redis | kafka | s3 | pg-tls | redis-tls | docdb (all seven by default).
#
# Ports and credentials: infra/local/stack.env, overridable by environment
# variables of the same name. State (data, logs, pids): $STACK_DIR, default
# <repo>/.local. Kafka jars and the FerretDB binary are cached outside it (see
# KAFKA_CACHE and FERRETDB_CACHE below) so that wiping .local does not cost a
# re-download or a rebuild.
set -euo pipefail

SCRIPT_PATH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
SCRIPT_DIR=$(dirname "$SCRIPT_PATH")
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------
CFG_VARS=(STACK_PG_PORT STACK_REDIS_PORT STACK_KAFKA_PORT STACK_KAFKA_CONTROLLER_PORT
          STACK_REDIS_MAXMEMORY STACK_PG_USER STACK_PG_PASSWORD STACK_PG_DB
          STACK_PG_SHARED_BUFFERS STACK_PG_TLS_PORT STACK_REDIS_TLS_PORT
          STACK_REDIS_TLS_PASSWORD STACK_KAFKA_SASL_PORT STACK_KAFKA_SASL_USER
          STACK_KAFKA_SASL_PASSWORD STACK_S3_PORT STACK_DOCDB_PORT STACK_DOCDB_TLS_PORT)

load_config() {
  # The env file holds plain assignments; remember what the caller exported so
  # that it wins over the file.
  local v env_file=${STACK_ENV_FILE:-$SCRIPT_DIR/stack.env}
  declare -A keep=()
  for v in "${CFG_VARS[@]}"; do
    if [[ -n ${!v+x} ]]; then keep[$v]=${!v}; fi
  done
  if [[ -f $env_file ]]; then
    # shellcheck source=/dev/null
    source "$env_file"
  fi
  for v in "${!keep[@]}"; do printf -v "$v" '%s' "${keep[$v]}"; done
  # Fallbacks in case the env file is missing or incomplete.
  : "${STACK_PG_PORT:=55432}" "${STACK_REDIS_PORT:=56379}"
  : "${STACK_KAFKA_PORT:=59092}" "${STACK_KAFKA_CONTROLLER_PORT:=59093}"
  : "${STACK_REDIS_MAXMEMORY:=256mb}" "${STACK_PG_SHARED_BUFFERS:=512MB}"
  : "${STACK_PG_USER:=qis}" "${STACK_PG_PASSWORD:=qis}" "${STACK_PG_DB:=qis}"
  : "${STACK_PG_TLS_PORT:=55433}" "${STACK_REDIS_TLS_PORT:=56380}" "${STACK_KAFKA_SASL_PORT:=59094}"
  : "${STACK_REDIS_TLS_PASSWORD:=qis-redis-auth}"
  : "${STACK_KAFKA_SASL_USER:=qis}" "${STACK_KAFKA_SASL_PASSWORD:=qis-scram-secret}"
  : "${STACK_S3_PORT:=59000}"
  : "${STACK_DOCDB_PORT:=57017}" "${STACK_DOCDB_TLS_PORT:=57018}"
}
load_config

STACK_DIR=$(realpath -m "${STACK_DIR:-$REPO/.local}")

# Readiness timeouts (seconds).
PG_TIMEOUT=${STACK_PG_TIMEOUT:-30}
REDIS_TIMEOUT=${STACK_REDIS_TIMEOUT:-10}
KAFKA_TIMEOUT=${STACK_KAFKA_TIMEOUT:-90}
S3_TIMEOUT=${STACK_S3_TIMEOUT:-30}
DOCDB_TIMEOUT=${STACK_DOCDB_TIMEOUT:-30}
STOP_TIMEOUT=${STACK_STOP_TIMEOUT:-30}

PG_DIR=$STACK_DIR/pg
# $STACK_DIR/pg may be a symlink (see pg_prepare_dir); hand postgres the real
# path, since it may not be allowed to traverse the link's parents.
[[ -L $PG_DIR ]] && PG_DIR=$(readlink -f "$PG_DIR")
PG_TLS_DIR=$STACK_DIR/pg-tls
[[ -L $PG_TLS_DIR ]] && PG_TLS_DIR=$(readlink -f "$PG_TLS_DIR")
REDIS_DIR=$STACK_DIR/redis
REDIS_TLS_DIR=$STACK_DIR/redis-tls
KAFKA_DIR=$STACK_DIR/kafka
S3_DIR=$STACK_DIR/s3
DOCDB_DIR=$STACK_DIR/docdb
# Local CA and server certificate (127.0.0.1 and localhost) for the secured services.
TLS_DIR=$STACK_DIR/tls
# Set (in a subshell) while the pg_* functions work on the TLS-only cluster.
PG_TLS=0

KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM" | head -n1)
KAFKA_CACHE=${STACK_KAFKA_CACHE:-${XDG_CACHE_HOME:-${HOME:-$STACK_DIR}/.cache}/qis-kafka/$KAFKA_VERSION}
KAFKA_LIBS=$KAFKA_CACHE/libs
KAFKA_HEAP=${STACK_KAFKA_HEAP:--Xms256m -Xmx512m}

# FerretDB is built once from its Go module source (see docdb_build) into this cache.
FERRETDB_VERSION=1.24.2
FERRETDB_CACHE=${STACK_FERRETDB_CACHE:-${XDG_CACHE_HOME:-${HOME:-$STACK_DIR}/.cache}/qis-ferretdb/$FERRETDB_VERSION}
FERRETDB_BIN=$FERRETDB_CACHE/ferretdb
# The PostgreSQL database FerretDB keeps its documents in (owned by STACK_PG_USER).
FERRETDB_PG_DB=ferretdb

IS_ROOT=0; [[ $(id -u) -eq 0 ]] && IS_ROOT=1

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
log()  { printf "[stack %(%H:%M:%S)T] %s\n" -1 "$*" >&2; }
die()  { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# fail_with_log MESSAGE LOGFILE: error out, showing the end of the service log.
fail_with_log() {
  printf '[stack] ERROR: %s\n' "$1" >&2
  if [[ -f $2 ]]; then
    printf '[stack] ---- last 40 lines of %s ----\n' "$2" >&2
    tail -n 40 "$2" >&2 || true
    printf '[stack] ---- end of %s ----\n' "$2" >&2
  else
    printf '[stack] (no log file at %s)\n' "$2" >&2
  fi
  exit 1
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# proc_is PID PATTERN: PID is alive and its command line contains PATTERN
# (guards against a stale pidfile whose pid was reused by something else).
proc_is() {
  local pid=$1 pat=$2 cmd
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$pat"* ]]
}

read_pid() { if [[ -f $1 ]]; then head -n1 "$1" 2>/dev/null | tr -dc '0-9' || true; fi; }

# wait_ready NAME TIMEOUT LOGFILE ALIVE_FN READY_FN
# Bounded wait; fails fast (with the log tail) if the process dies meanwhile.
wait_ready() {
  local name=$1 timeout=$2 logf=$3 alive=$4 ready=$5 start=$SECONDS
  while ! "$ready"; do
    "$alive" || fail_with_log "$name exited during startup" "$logf"
    (( SECONDS - start < timeout )) || fail_with_log "$name not ready after ${timeout}s" "$logf"
    sleep 0.5
  done
}

# pid_live PID: process exists and is not a zombie. Daemons are reparented to
# PID 1, which on some hosts (this VM's init included) reaps exited children
# only lazily, so a stopped service can linger a few seconds as <defunct>.
pid_live() {
  [[ -d /proc/$1 ]] || return 1
  local st; st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z && $st != X ]]
}

# wait_gone PID TIMEOUT: wait until PID has exited; returns 1 on timeout.
wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while pid_live "$pid"; do
    (( SECONDS < deadline )) || return 1
    sleep 0.2
  done
}

# stop_pid NAME PID: SIGTERM, bounded wait, then SIGKILL.
stop_pid() {
  local name=$1 pid=$2
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
    log "$name (pid $pid) still running after ${STOP_TIMEOUT}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || die "$name (pid $pid) survived SIGKILL"
  fi
}

# apt_install PKG...: root only. A temporary policy-rc.d (exit 101) keeps the
# packages' maintainer scripts from starting system-wide services (the Debian
# redis-server / postgresql packages would otherwise start theirs on 6379/5432).
apt_install() {
  (( IS_ROOT )) || die "missing packages ($*); install them or re-run as root"
  local rc=0 made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  log "apt-get install $* ..."
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; } \
    > "$STACK_DIR/apt.log" 2>&1 || rc=$?
  (( made_policy )) && rm -f /usr/sbin/policy-rc.d
  (( rc == 0 )) || fail_with_log "apt-get install $* failed" "$STACK_DIR/apt.log"
}

# The default ports lie inside Linux's ephemeral range (32768-60999). A client
# that keeps retrying 127.0.0.1:PORT while the service is down (e.g. a Kafka
# client during a broker restart) can be handed PORT itself as its source port
# and "self-connect", after which the service can't bind ("Address already in
# use"); any busy client can also just happen to hold it. Reserving the ports
# stops the kernel from handing them out. Root only, best effort.
port_reserved() {  # PORT LIST, LIST as the kernel prints it: "55432,59092-59093"
  local item lo hi
  for item in ${2//,/ }; do
    lo=${item%-*}; hi=${item#*-}
    (( $1 >= lo && $1 <= hi )) && return 0
  done
  return 1
}
reserve_ports() {
  local f=/proc/sys/net/ipv4/ip_local_reserved_ports cur p add=()
  # STACK_RESERVE_PORTS=0: leave the kernel alone (tests on throw-away ports).
  [[ ${STACK_RESERVE_PORTS:-1} == 1 ]] && (( IS_ROOT )) && [[ -w $f ]] || return 0
  cur=$(<"$f")
  for p in "$@"; do
    port_reserved "$p" "$cur" || add+=("$p")
  done
  (( ${#add[@]} )) || return 0
  local IFS=,
  if echo "${cur:+$cur,}${add[*]}" > "$f" 2>/dev/null; then
    log "reserved ports ${add[*]} (net.ipv4.ip_local_reserved_ports) so no client socket can take them"
  else
    log "note: could not reserve ports ${add[*]} in $f"
  fi
}

urlencode() {
  local LC_ALL=C s=$1 out='' c i
  for (( i = 0; i < ${#s}; i++ )); do
    c=${s:i:1}
    case $c in
      [a-zA-Z0-9.~_-]) out+=$c ;;
      *) printf -v c '%%%02X' "'$c"; out+=$c ;;
    esac
  done
  printf '%s' "$out"
}

# install_if_changed TMP DEST: move TMP over DEST unless they are equal; return 0
# when DEST changed (a running service must then reload or restart), else 1.
install_if_changed() {
  if [[ -f $2 ]] && cmp -s "$1" "$2"; then rm -f "$1"; return 1; fi
  mv -f "$1" "$2"
}

# ---------------------------------------------------------------------------
# Certificates: a local CA and one server certificate, made once by openssl
# ---------------------------------------------------------------------------
# ca.pem is what clients trust (QIS_*_CA_FILE / SSL_ROOT_CERT); server.pem and
# server.key serve 127.0.0.1 and localhost, so clients can verify host names.
# Remade when missing, not signed by ca.pem, or expiring within 7 days.
tls_valid() {
  [[ -f $TLS_DIR/ca.pem && -f $TLS_DIR/server.pem && -f $TLS_DIR/server.key ]] \
    && openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" >/dev/null 2>&1 \
    && openssl x509 -checkend 604800 -noout -in "$TLS_DIR/server.pem" >/dev/null 2>&1
}

tls_setup() {
  command -v openssl >/dev/null || apt_install openssl
  tls_valid && return 0
  local tmp=$TLS_DIR.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp"
  log "tls: making a local CA and a server certificate for 127.0.0.1/localhost in $TLS_DIR"
  # The keys are PKCS#8 PEM without a passphrase (Kafka >= 3.3 reads them as they are).
  if ! (
    umask 077
    cd "$tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
      -subj "/CN=QIS local stack CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
      -days 825 -extfile server.ext -out server.pem
    cat server.key server.pem > kafka-keystore.pem
    rm -f server.csr server.ext
    chmod 644 ca.pem server.pem
  ) > "$STACK_DIR/tls.log" 2>&1; then
    rm -rf "$tmp"
    fail_with_log "tls: openssl could not make the certificates" "$STACK_DIR/tls.log"
  fi
  rm -rf "$TLS_DIR"
  mv "$tmp" "$TLS_DIR"
}

# Fingerprint of the server certificate: written into generated service configs,
# so a new certificate changes the config and the service restarts to load it.
tls_fingerprint() { openssl x509 -noout -fingerprint -sha256 -in "$TLS_DIR/server.pem" | cut -d= -f2; }

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------
PG_BIN=''
PG_OS_USER=$(id -un)
PG_NAME=postgres

pg_find_bin() {
  local d
  for d in ${STACK_PG_BIN:-} /usr/lib/postgresql/15/bin \
           $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4,4 -V -r); do
    if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then PG_BIN=$d; return 0; fi
  done
  return 1
}

pg_setup_bin() {
  pg_find_bin && return 0
  apt_install postgresql
  pg_find_bin || die "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin after install"
}

# PostgreSQL refuses to run as root (initdb, pg_ctl and postgres all check), so
# as root the cluster belongs to the 'postgres' OS user (created by Debian's
# postgresql-common; we create a system user 'postgres' if it is missing).
pg_setup_user() {
  (( IS_ROOT )) || return 0
  PG_OS_USER=${STACK_PG_OS_USER:-postgres}
  if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    log "creating system user $PG_OS_USER"
    useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
}

# as_pg CMD...: run as the cluster owner. cd / because the caller's cwd may not
# be readable by that user (initdb/pg_ctl complain about it).
as_pg() {
  if (( IS_ROOT )); then
    ( cd / && runuser -u "$PG_OS_USER" -- "$@" )
  else
    ( cd / && "$@" )
  fi
}

# As root, the 'postgres' user must be able to traverse every parent of the data
# dir. If it can't (e.g. the checkout lives under /root, mode 700), keep the
# cluster under /var/tmp and leave a symlink at $STACK_DIR/pg.
pg_prepare_dir() {
  if [[ -e $PG_DIR ]]; then
    # Created earlier by root for 'postgres' and now run as another user (or vice versa)?
    local owner; owner=$(stat -Lc %U "$PG_DIR")
    [[ $owner == "$PG_OS_USER" ]] || die "$PG_DIR is owned by $owner, not $PG_OS_USER: run as the same user as before, or use another STACK_DIR"
    return 0
  fi
  if (( IS_ROOT )) && ! runuser -u "$PG_OS_USER" -- test -x "$STACK_DIR" 2>/dev/null; then
    local real suffix=''
    (( PG_TLS )) && suffix=-tls
    real=/var/tmp/qis-stack-pg-$(printf '%s' "$STACK_DIR" | cksum | cut -d' ' -f1)$suffix
    log "$PG_OS_USER cannot reach $STACK_DIR; keeping the cluster in $real (symlinked)"
    mkdir -p "$real"
    ln -sfn "$real" "$PG_DIR"
    PG_DIR=$real
  else
    mkdir -p "$PG_DIR"
  fi
  (( IS_ROOT )) && chown "$PG_OS_USER:" "$PG_DIR/"
  chmod 700 "$PG_DIR/"
}

pg_pid()     { read_pid "$PG_DIR/data/postmaster.pid"; }
pg_alive()   { local p; p=$(pg_pid); [[ -n $p ]] && proc_is "$p" postgres; }
pg_ready()   { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$STACK_PG_PORT" -t 2 >/dev/null 2>&1; }
pg_running() { pg_alive && pg_ready; }
# Live processes whose cwd is the data dir (every postgres process chdirs there).
pg_cluster_pids() {
  local d p out=()
  d=$(readlink -f "$PG_DIR/data" 2>/dev/null) || return 0
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/cwd" 2>/dev/null) == "$d" ]] && pid_live "${p#/proc/}" && out+=("${p#/proc/}")
  done
  echo "${out[*]}"
}

pg_write_conf() {
  # Rewritten on every start so that port changes in stack.env take effect.
  local q=\' run=${PG_DIR}/run
  run=${run//$q/$q$q}
  cat > "$PG_DIR/stack.conf.tmp" <<EOF
# Generated by infra/local/stack.sh on every 'up' - edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $STACK_PG_PORT
unix_socket_directories = '$run'
max_connections = 200
shared_buffers = $STACK_PG_SHARED_BUFFERS
# Fewer checkpoints under the benchmarks' write bursts, and cheaper full-page images
# after each (a run that met a checkpoint wrote twice the WAL and went at half speed).
max_wal_size = 4GB
checkpoint_timeout = 15min
wal_compression = lz4
password_encryption = scram-sha-256
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  if (( PG_TLS )); then
    local tls=${PG_DIR//$q/$q$q}/tls
    cat >> "$PG_DIR/stack.conf.tmp" <<EOF
# TLS for every TCP client (pg_hba.conf refuses the others).
ssl = on
ssl_cert_file = '$tls/server.pem'
ssl_key_file = '$tls/server.key'
ssl_min_protocol_version = 'TLSv1.2'
EOF
  fi
  (( IS_ROOT )) && chown "$PG_OS_USER:" "$PG_DIR/stack.conf.tmp"
  mv -f "$PG_DIR/stack.conf.tmp" "$PG_DIR/data/stack.conf"
}

# The TLS-only cluster: a copy of the server certificate and key that the cluster
# owner can read (postgres wants its key 0600 and its own). Returns 0 if changed.
pg_tls_install() {
  local f changed=1
  mkdir -p "$PG_DIR/tls"
  for f in server.pem server.key; do
    cp "$TLS_DIR/$f" "$PG_DIR/tls/$f.tmp"
    chmod 600 "$PG_DIR/tls/$f.tmp"
    (( IS_ROOT )) && chown "$PG_OS_USER:" "$PG_DIR/tls/$f.tmp"
    if install_if_changed "$PG_DIR/tls/$f.tmp" "$PG_DIR/tls/$f"; then changed=0; fi
  done
  chmod 700 "$PG_DIR/tls"
  (( IS_ROOT )) && chown "$PG_OS_USER:" "$PG_DIR/tls"
  return $changed
}

# The TLS-only cluster's pg_hba.conf: TCP over TLS with SCRAM, plaintext TCP
# refused. Returns 0 if changed.
pg_tls_write_hba() {
  cat > "$PG_DIR/data/pg_hba.conf.tmp" <<'EOF'
# Generated by infra/local/stack.sh on every 'up' - edit the script, not this file.
# TYPE    DATABASE  USER  ADDRESS        METHOD
local     all       all                  trust
hostssl   all       all   127.0.0.1/32   scram-sha-256
hostnossl all       all   0.0.0.0/0      reject
hostnossl all       all   ::/0           reject
EOF
  (( IS_ROOT )) && chown "$PG_OS_USER:" "$PG_DIR/data/pg_hba.conf.tmp"
  install_if_changed "$PG_DIR/data/pg_hba.conf.tmp" "$PG_DIR/data/pg_hba.conf"
}

pg_initdb() {
  [[ -f $PG_DIR/data/PG_VERSION ]] && return 0
  log "$PG_NAME: initdb in $PG_DIR/data"
  rm -rf "$PG_DIR/data.tmp"
  # Init into data.tmp and rename, so a failed initdb never leaves a half-made
  # cluster that the next 'up' would try to start.
  # Local (unix socket) connections are 'trust': the socket lives in a 0700 dir
  # only the cluster owner (and root) can enter. TCP on 127.0.0.1 uses SCRAM.
  as_pg "$PG_BIN/initdb" -D "$PG_DIR/data.tmp" -U postgres --encoding=UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 > "$PG_DIR/initdb.log" 2>&1 \
    || fail_with_log "initdb failed" "$PG_DIR/initdb.log"
  printf "\ninclude_if_exists = 'stack.conf'\n" >> "$PG_DIR/data.tmp/postgresql.conf"
  mv "$PG_DIR/data.tmp" "$PG_DIR/data"
}

pg_provision() {
  # Role + database, idempotent; the password is re-applied on every up so it
  # always matches stack.env.
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR/run" -p "$STACK_PG_PORT" \
        -U postgres -d postgres \
        -v u="$STACK_PG_USER" -v pw="$STACK_PG_PASSWORD" -v db="$STACK_PG_DB" >/dev/null <<'SQL' \
    || die "$PG_NAME: creating role/database failed"
SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'u')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'u') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'u', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'u')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
}

pg_up() {
  pg_setup_bin
  pg_setup_user
  pg_prepare_dir
  if pg_alive; then
    wait_ready "$PG_NAME" "$PG_TIMEOUT" "$PG_DIR/pg.log" pg_alive pg_ready
    log "$PG_NAME: already running (pid $(pg_pid), port $STACK_PG_PORT)"
    if (( PG_TLS )); then
      local changed=0
      if pg_tls_install; then changed=1; fi
      if pg_tls_write_hba; then changed=1; fi
      if (( changed )); then
        log "$PG_NAME: certificate or pg_hba.conf changed: reloading"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" reload >/dev/null
      fi
    fi
    pg_provision
    return 0
  fi
  port_open "$STACK_PG_PORT" && die "$PG_NAME: port 127.0.0.1:$STACK_PG_PORT is used by another process (see: ss -ltnp)"
  pg_initdb
  pg_write_conf
  if (( PG_TLS )); then pg_tls_install || true; pg_tls_write_hba || true; fi
  # Not running but maybe crashed (kill -9, OOM, reboot): backends of a dead
  # postmaster exit on their own shortly; then drop its stale pid/lock files.
  # (Postgres' own staleness check is fooled by a not-yet-reaped zombie pid.)
  local t=$SECONDS
  while [[ -n $(pg_cluster_pids) ]]; do
    (( SECONDS - t < 10 )) || die "$PG_NAME: processes still using $PG_DIR/data: $(pg_cluster_pids)"
    sleep 0.2
  done
  rm -f "$PG_DIR/data/postmaster.pid" "$PG_DIR"/run/.s.PGSQL.*
  mkdir -p "$PG_DIR/run"; chmod 700 "$PG_DIR/run"
  (( IS_ROOT )) && chown "$PG_OS_USER:" "$PG_DIR/run"
  log "$PG_NAME: starting on 127.0.0.1:$STACK_PG_PORT"
  # -W: don't let pg_ctl wait; we do our own bounded wait on the TCP port.
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/pg.log" -W start >/dev/null \
    || fail_with_log "pg_ctl start failed" "$PG_DIR/pg.log"
  local start=$SECONDS
  # Give the postmaster a moment to write its pidfile before checking liveness.
  while [[ ! -f $PG_DIR/data/postmaster.pid ]] && (( SECONDS - start < 5 )); do sleep 0.1; done
  wait_ready "$PG_NAME" "$PG_TIMEOUT" "$PG_DIR/pg.log" pg_alive pg_ready
  pg_provision
  log "$PG_NAME: ready (pid $(pg_pid))"
}

pg_down() {
  pg_find_bin || true
  local pid; pid=$(pg_pid)
  if [[ -z $pid ]] || ! proc_is "$pid" postgres; then log "$PG_NAME: not running"; return 0; fi
  (( IS_ROOT )) && PG_OS_USER=$(stat -Lc %U "$PG_DIR/data")
  log "$PG_NAME: stopping (pid $pid)"
  if [[ -n $PG_BIN ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t "$STOP_TIMEOUT" stop >/dev/null 2>&1 || true
  fi
  if pid_live "$pid"; then
    # pg_ctl failed or timed out: immediate shutdown (SIGQUIT), then SIGKILL.
    kill -QUIT "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 5 || true; }
  fi
  pid_live "$pid" && die "$PG_NAME: pid $pid still running"
  log "$PG_NAME: stopped"
}

# with_pg_tls FUNCTION ARGS...: run a pg_* function against the TLS-only cluster
# (its own data directory, port and a small shared_buffers), in a subshell.
with_pg_tls() (
  PG_DIR=$PG_TLS_DIR PG_TLS=1 PG_NAME=postgres-tls
  STACK_PG_PORT=$STACK_PG_TLS_PORT STACK_PG_SHARED_BUFFERS=32MB
  "$@"
)
pg_tls_up()   { tls_setup; with_pg_tls pg_up; }
pg_tls_down() { with_pg_tls pg_down; }

# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------
redis_pid()     { read_pid "$REDIS_DIR/redis.pid"; }
redis_alive()   { local p; p=$(redis_pid); [[ -n $p ]] && proc_is "$p" redis-server; }
# Before the daemon has written its pidfile, treat it as (still) starting.
redis_alive_or_starting() { [[ ! -f $REDIS_DIR/redis.pid ]] || redis_alive; }
redis_ready()   { [[ $(redis-cli -h 127.0.0.1 -p "$STACK_REDIS_PORT" ping 2>/dev/null) == PONG ]]; }
redis_running() { redis_alive && redis_ready; }

redis_setup_bin() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then return 0; fi
  apt_install redis-server redis-tools
  # policy-rc.d blocked the package's own service; if one got started anyway
  # (e.g. a policy-rc.d that allows it), stop and disable it: we only want ours.
  if [[ -f /run/redis/redis-server.pid ]] || redis-cli -p 6379 ping >/dev/null 2>&1; then
    log "redis: stopping the system redis-server service started by the package"
    service redis-server stop >/dev/null 2>&1 || true
    local p; p=$(read_pid /run/redis/redis-server.pid)
    [[ -n $p ]] && proc_is "$p" redis-server && stop_pid system-redis "$p"
  fi
  systemctl disable redis-server >/dev/null 2>&1 || update-rc.d redis-server disable >/dev/null 2>&1 || true
  command -v redis-server >/dev/null || die "redis-server still missing after install"
}

redis_up() {
  redis_setup_bin
  local ver; ver=$(redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')
  [[ ${ver%%.*} -ge 7 ]] 2>/dev/null || log "redis: WARNING: redis-server $ver found, Redis 7 expected"
  mkdir -p "$REDIS_DIR"
  if redis_alive; then
    wait_ready redis "$REDIS_TIMEOUT" "$REDIS_DIR/redis.log" redis_alive redis_ready
    log "redis: already running (pid $(redis_pid), port $STACK_REDIS_PORT)"
    return 0
  fi
  port_open "$STACK_REDIS_PORT" && die "redis: port 127.0.0.1:$STACK_REDIS_PORT is used by another process (see: ss -ltnp)"
  rm -f "$REDIS_DIR/redis.pid"
  log "redis: starting on 127.0.0.1:$STACK_REDIS_PORT (redis-server $ver, maxmemory $STACK_REDIS_MAXMEMORY)"
  # Pure cache: no RDB snapshots, no AOF.
  # shellcheck disable=SC2094  # redis appends to its own log; we only append too
  redis-server --bind 127.0.0.1 --port "$STACK_REDIS_PORT" --protected-mode yes \
    --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" \
    --dir "$REDIS_DIR" --maxmemory "$STACK_REDIS_MAXMEMORY" --maxmemory-policy allkeys-lru \
    --save '' --appendonly no </dev/null >>"$REDIS_DIR/redis.log" 2>&1 \
    || fail_with_log "redis-server failed to start" "$REDIS_DIR/redis.log"
  wait_ready redis "$REDIS_TIMEOUT" "$REDIS_DIR/redis.log" redis_alive_or_starting redis_ready
  # The pidfile may trail readiness by a moment.
  local start=$SECONDS
  while ! redis_alive && (( SECONDS - start < 5 )); do sleep 0.1; done
  redis_alive || fail_with_log "redis answers on $STACK_REDIS_PORT but $REDIS_DIR/redis.pid is missing" "$REDIS_DIR/redis.log"
  log "redis: ready (pid $(redis_pid))"
}

redis_down() {
  local pid; pid=$(redis_pid)
  if [[ -z $pid ]] || ! proc_is "$pid" redis-server; then
    log "redis: not running"; rm -f "$REDIS_DIR/redis.pid"; return 0
  fi
  log "redis: stopping (pid $pid)"
  redis-cli -h 127.0.0.1 -p "$STACK_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  if ! wait_gone "$pid" 10; then stop_pid redis "$pid"; fi
  rm -f "$REDIS_DIR/redis.pid"
  log "redis: stopped"
}

# ---------------------------------------------------------------------------
# Redis with TLS and AUTH (a second, small instance: TLS port only, requirepass)
# ---------------------------------------------------------------------------
redis_tls_pid()   { read_pid "$REDIS_TLS_DIR/redis.pid"; }
redis_tls_alive() { local p; p=$(redis_tls_pid); [[ -n $p ]] && proc_is "$p" redis-server; }
redis_tls_alive_or_starting() { [[ ! -f $REDIS_TLS_DIR/redis.pid ]] || redis_tls_alive; }
# The password travels in the environment, not on the command line.
redis_tls_cli() {
  REDISCLI_AUTH=$STACK_REDIS_TLS_PASSWORD redis-cli --tls --cacert "$TLS_DIR/ca.pem" \
    -h 127.0.0.1 -p "$STACK_REDIS_TLS_PORT" "$@"
}
redis_tls_ready()   { [[ $(redis_tls_cli ping 2>/dev/null) == PONG ]]; }
redis_tls_running() { redis_tls_alive && redis_tls_ready; }

# Regenerated on every 'up' (ports, password or certificate may change); returns 0
# if it changed, so that a running instance is restarted with it.
redis_tls_write_conf() {
  local fp; fp=$(tls_fingerprint)
  mkdir -p "$REDIS_TLS_DIR"
  ( umask 077; cat > "$REDIS_TLS_DIR/redis.conf.tmp" <<EOF
# Generated by infra/local/stack.sh on every 'up' - edit the script, not this file.
# Server certificate SHA-256: $fp
bind 127.0.0.1
protected-mode yes
port 0
tls-port $STACK_REDIS_TLS_PORT
tls-cert-file "$TLS_DIR/server.pem"
tls-key-file "$TLS_DIR/server.key"
tls-ca-cert-file "$TLS_DIR/ca.pem"
tls-auth-clients no
tls-protocols "TLSv1.2 TLSv1.3"
requirepass "$STACK_REDIS_TLS_PASSWORD"
daemonize yes
pidfile "$REDIS_TLS_DIR/redis.pid"
logfile "$REDIS_TLS_DIR/redis.log"
dir "$REDIS_TLS_DIR"
maxmemory 64mb
maxmemory-policy allkeys-lru
save ""
appendonly no
EOF
  )
  install_if_changed "$REDIS_TLS_DIR/redis.conf.tmp" "$REDIS_TLS_DIR/redis.conf"
}

redis_tls_up() {
  redis_setup_bin
  tls_setup
  local changed=0
  if redis_tls_write_conf; then changed=1; fi
  if redis_tls_alive; then
    if (( ! changed )); then
      wait_ready redis-tls "$REDIS_TIMEOUT" "$REDIS_TLS_DIR/redis.log" redis_tls_alive redis_tls_ready
      log "redis-tls: already running (pid $(redis_tls_pid), TLS port $STACK_REDIS_TLS_PORT)"
      return 0
    fi
    log "redis-tls: configuration changed: restarting"
    redis_tls_down
  fi
  port_open "$STACK_REDIS_TLS_PORT" && die "redis-tls: port 127.0.0.1:$STACK_REDIS_TLS_PORT is used by another process (see: ss -ltnp)"
  rm -f "$REDIS_TLS_DIR/redis.pid"
  log "redis-tls: starting on 127.0.0.1:$STACK_REDIS_TLS_PORT (TLS only, AUTH required)"
  # shellcheck disable=SC2094  # redis appends to its own log; we only append too
  redis-server "$REDIS_TLS_DIR/redis.conf" </dev/null >>"$REDIS_TLS_DIR/redis.log" 2>&1 \
    || fail_with_log "redis-server (TLS) failed to start" "$REDIS_TLS_DIR/redis.log"
  wait_ready redis-tls "$REDIS_TIMEOUT" "$REDIS_TLS_DIR/redis.log" redis_tls_alive_or_starting redis_tls_ready
  local start=$SECONDS
  while ! redis_tls_alive && (( SECONDS - start < 5 )); do sleep 0.1; done
  redis_tls_alive || fail_with_log "redis-tls answers on $STACK_REDIS_TLS_PORT but $REDIS_TLS_DIR/redis.pid is missing" "$REDIS_TLS_DIR/redis.log"
  log "redis-tls: ready (pid $(redis_tls_pid))"
}

redis_tls_down() {
  local pid; pid=$(redis_tls_pid)
  if [[ -z $pid ]] || ! proc_is "$pid" redis-server; then
    log "redis-tls: not running"; rm -f "$REDIS_TLS_DIR/redis.pid"; return 0
  fi
  log "redis-tls: stopping (pid $pid)"
  stop_pid redis-tls "$pid"
  rm -f "$REDIS_TLS_DIR/redis.pid"
  log "redis-tls: stopped"
}

# ---------------------------------------------------------------------------
# Kafka (KRaft combined mode, jars from Maven Central)
# ---------------------------------------------------------------------------
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
kafka_pid()     { read_pid "$KAFKA_DIR/kafka.pid"; }
kafka_alive()   { local p; p=$(kafka_pid); [[ -n $p ]] && proc_is "$p" "$KAFKA_DIR/server.properties"; }
kafka_ready()   { port_open "$STACK_KAFKA_PORT" && port_open "$STACK_KAFKA_SASL_PORT"; }
kafka_running() { kafka_alive && kafka_ready; }

kafka_setup_java() {
  command -v "$JAVA" >/dev/null || { apt_install openjdk-17-jre-headless; JAVA=java; }
  command -v mvn >/dev/null || [[ -f $KAFKA_LIBS/.complete ]] || apt_install maven
}

# Resolve the broker's runtime classpath once per pom.xml content. The marker
# (written last) holds the pom hash: present + matching = complete cache, no mvn.
kafka_fetch_libs() {
  local want; want=$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)
  if [[ -f $KAFKA_LIBS/.complete && $(cat "$KAFKA_LIBS/.complete") == "$want" ]]; then return 0; fi
  local tmp=$KAFKA_CACHE/libs.tmp.$$
  mkdir -p "$KAFKA_CACHE" "$KAFKA_DIR"
  rm -rf "$tmp"
  log "kafka: resolving Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS (once)"
  if ! mvn -q -B -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" > "$KAFKA_DIR/mvn.log" 2>&1; then
    rm -rf "$tmp"
    fail_with_log "mvn could not fetch the Kafka jars" "$KAFKA_DIR/mvn.log"
  fi
  [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar && -f $tmp/kafka-server-$KAFKA_VERSION.jar ]] \
    || { rm -rf "$tmp"; die "kafka: jar set incomplete (no kafka_2.13/kafka-server jar)"; }
  printf '%s\n' "$want" > "$tmp/.complete"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
}

kafka_write_tools_conf() {
  mkdir -p "$KAFKA_DIR/data"
  # Broker logging: console -> stdout, which is appended to kafka.log.
  cat > "$KAFKA_DIR/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.controller=INFO
log4j.logger.org.apache.kafka.controller=INFO
EOF
  # CLI tools: warnings only, on stderr, so stdout carries just the tool's output
  # (StorageTool random-uuid must print nothing but the id).
  cat > "$KAFKA_DIR/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

# Regenerated on every 'up' (ports, certificate may change); identity lives in
# data/meta.properties. Returns 0 if it changed: a running broker then restarts.
kafka_write_conf() {
  local fp; fp=$(tls_fingerprint)
  mkdir -p "$KAFKA_DIR/data"
  cat > "$KAFKA_DIR/server.properties.tmp" <<EOF
# Generated by infra/local/stack.sh on every 'up' - edit the script, not this file.
# Server certificate SHA-256: $fp
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$STACK_KAFKA_CONTROLLER_PORT
# PLAINTEXT for the application's default settings; SASL_SSL (TLS + SCRAM-SHA-512,
# as MSK's port 9096) for the secured path (stack.sh env secure).
listeners=PLAINTEXT://127.0.0.1:$STACK_KAFKA_PORT,SASL_SSL://127.0.0.1:$STACK_KAFKA_SASL_PORT,CONTROLLER://127.0.0.1:$STACK_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$STACK_KAFKA_PORT,SASL_SSL://127.0.0.1:$STACK_KAFKA_SASL_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/kafka-keystore.pem
listener.name.sasl_ssl.ssl.client.auth=none
log.dirs=$KAFKA_DIR/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  install_if_changed "$KAFKA_DIR/server.properties.tmp" "$KAFKA_DIR/server.properties"
}

# SCRAM-SHA-512 credentials of the SASL_SSL listener's user, set through the
# PLAINTEXT listener (KRaft keeps them in the metadata log). A marker in the data
# directory remembers what was set, so a plain restart skips the JVM tool.
kafka_scram_user() {
  local want marker=$KAFKA_DIR/data/qis-scram-user.sha256
  [[ $STACK_KAFKA_SASL_PASSWORD =~ ^[^][,=[:space:]]+$ ]] \
    || die "kafka: STACK_KAFKA_SASL_PASSWORD must not be empty nor contain ',', '=', brackets or spaces"
  want=$(printf '%s\n' "$STACK_KAFKA_SASL_USER" "$STACK_KAFKA_SASL_PASSWORD" \
           "$(cat "$KAFKA_DIR/data/meta.properties")" | sha256sum | cut -d' ' -f1)
  [[ -f $marker && $(cat "$marker") == "$want" ]] && return 0
  log "kafka: setting SCRAM-SHA-512 credentials of user $STACK_KAFKA_SASL_USER"
  kafka_tool kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$STACK_KAFKA_PORT" --alter \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$STACK_KAFKA_SASL_PASSWORD]" \
    --entity-type users --entity-name "$STACK_KAFKA_SASL_USER" >"$KAFKA_DIR/scram.log" 2>&1 \
    || fail_with_log "kafka: could not set the SCRAM credentials" "$KAFKA_DIR/scram.log"
  printf '%s\n' "$want" > "$marker"
}

# kafka_tool CLASS ARGS...: run a Kafka CLI class with quiet (stderr) logging.
kafka_tool() {
  "$JAVA" -Xmx256m -Dlog4j.configuration="file:$KAFKA_DIR/tools-log4j.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}

kafka_format() {
  [[ -f $KAFKA_DIR/data/meta.properties ]] && return 0
  local id
  id=$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$KAFKA_DIR/format.log") \
    || fail_with_log "kafka: StorageTool random-uuid failed" "$KAFKA_DIR/format.log"
  [[ $id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka: unexpected cluster id from StorageTool: '$id'"
  log "kafka: formatting storage (cluster id $id)"
  kafka_tool kafka.tools.StorageTool format -t "$id" -c "$KAFKA_DIR/server.properties" \
    >>"$KAFKA_DIR/format.log" 2>&1 \
    || fail_with_log "kafka: StorageTool format failed" "$KAFKA_DIR/format.log"
}

kafka_up() {
  kafka_setup_java
  mkdir -p "$KAFKA_DIR"
  tls_setup
  kafka_write_tools_conf
  local changed=0
  if kafka_write_conf; then changed=1; fi
  if kafka_alive; then
    if (( ! changed )); then
      wait_ready kafka "$KAFKA_TIMEOUT" "$KAFKA_DIR/kafka.log" kafka_alive kafka_ready
      log "kafka: already running (pid $(kafka_pid), port $STACK_KAFKA_PORT)"
      kafka_scram_user
      return 0
    fi
    log "kafka: configuration changed (listeners, ports or certificate): restarting"
    kafka_down
  fi
  local p
  for p in "$STACK_KAFKA_PORT" "$STACK_KAFKA_SASL_PORT" "$STACK_KAFKA_CONTROLLER_PORT"; do
    port_open "$p" && die "kafka: port 127.0.0.1:$p is used by another process (see: ss -ltnp)"
  done
  kafka_fetch_libs
  kafka_format
  rm -f "$KAFKA_DIR/kafka.pid"
  # Keep one previous log instead of growing forever.
  [[ -f $KAFKA_DIR/kafka.log ]] && mv -f "$KAFKA_DIR/kafka.log" "$KAFKA_DIR/kafka.log.1"
  log "kafka: starting on 127.0.0.1:$STACK_KAFKA_PORT (controller $STACK_KAFKA_CONTROLLER_PORT)"
  # setsid: own session, so the broker survives the calling shell/terminal.
  # The inner bash writes its own pid, then exec's java under that same pid.
  # shellcheck disable=SC2086,SC2016  # KAFKA_HEAP is a word list; $$ is the inner shell's
  setsid nohup bash -c 'echo $$ > "$1"; shift; exec "$@"' kafka-launcher "$KAFKA_DIR/kafka.pid" \
    "$JAVA" $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
    </dev/null >>"$KAFKA_DIR/kafka.log" 2>&1 &
  local start=$SECONDS
  while [[ ! -s $KAFKA_DIR/kafka.pid ]] && (( SECONDS - start < 5 )); do sleep 0.1; done
  # The client listener only opens once the broker has caught up with the
  # metadata log, so an open port means "ready".
  wait_ready kafka "$KAFKA_TIMEOUT" "$KAFKA_DIR/kafka.log" kafka_alive kafka_ready
  kafka_scram_user
  log "kafka: ready (pid $(kafka_pid))"
}

kafka_down() {
  local pid; pid=$(kafka_pid)
  if [[ -z $pid ]] || ! proc_is "$pid" kafka.Kafka; then
    log "kafka: not running"; rm -f "$KAFKA_DIR/kafka.pid"; return 0
  fi
  log "kafka: stopping (pid $pid)"
  stop_pid kafka "$pid"
  rm -f "$KAFKA_DIR/kafka.pid"
  log "kafka: stopped"
}

# ---------------------------------------------------------------------------
# S3 (the moto server in server mode, from the project's .venv)
# ---------------------------------------------------------------------------
# moto keeps objects in memory. To survive a restart, its request recorder appends
# every request it serves (bodies base64) to $S3_DIR/recording.jsonl, and 'up'
# replays that file into the fresh server before it counts as ready: buckets and
# objects come back as they were. Deleting the file (with s3 down) empties the local
# lake. Static credentials: any access key works; `stack.sh env` exports "testing".
S3_BIN=${STACK_S3_BIN:-$REPO/.venv/bin/moto_server}
S3_RECORDING=$S3_DIR/recording.jsonl

s3_pid()     { read_pid "$S3_DIR/s3.pid"; }
s3_alive()   { local p; p=$(s3_pid); [[ -n $p ]] && proc_is "$p" moto_server; }
# A TCP probe, not an HTTP one: the recorder would keep every probe request.
s3_ready()   { port_open "$STACK_S3_PORT"; }
s3_running() { s3_alive && s3_ready; }
# A moto server someone else started on the port (its management API answers).
s3_foreign() { ! s3_alive && curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$STACK_S3_PORT/moto-api/" 2>/dev/null; }

# Only readable S3 requests are kept for the replay:
# - the same server is the local EventBridge, SQS and Timestream (JSON-protocol requests,
#   with an X-Amz-Target header): replaying them would put every event again at each
#   start, and the sinks' writes would grow the file with every run; their resources are
#   made again by `qis events setup` and `qis timestream setup` (make migrate, make run);
# - moto's recorder appends from concurrent request threads, so two large requests can
#   interleave into one unreadable line, which would fail the whole replay and leave the
#   stack unstartable: such a line is left out (and counted) instead.
# Runs while the server is down.
s3_keep_s3_requests() {
  local counts
  counts=$("$REPO/.venv/bin/python" - "$S3_RECORDING" <<'PY'
import json
import os
import sys

path = sys.argv[1]
kept = other = unreadable = 0
with open(path, "rb") as src, open(path + ".tmp", "wb") as dst:
    for line in src:
        try:
            headers = json.loads(line).get("headers") or {}
        except (ValueError, AttributeError):
            unreadable += 1
            continue
        if any(name.lower() == "x-amz-target" for name in headers):
            other += 1
            continue
        dst.write(line)
        kept += 1
os.replace(path + ".tmp", path)
print(kept, other, unreadable)
PY
) || fail_with_log "s3: filtering $S3_RECORDING failed" "$S3_DIR/s3.log"
  local kept other unreadable
  read -r kept other unreadable <<<"$counts"
  if (( other + unreadable > 0 )); then
    log "s3: replaying $kept S3 requests; left out $other EventBridge/SQS/Timestream requests and $unreadable unreadable lines"
  fi
}

s3_up() {
  [[ -x $S3_BIN ]] || die "s3: $S3_BIN not found (run 'make setup': moto[server] is a dev dependency)"
  command -v curl >/dev/null || apt_install curl
  mkdir -p "$S3_DIR"
  if s3_alive; then
    wait_ready s3 "$S3_TIMEOUT" "$S3_DIR/s3.log" s3_alive s3_ready
    log "s3: already running (pid $(s3_pid), port $STACK_S3_PORT)"
    return 0
  fi
  if port_open "$STACK_S3_PORT"; then
    s3_foreign || die "s3: port 127.0.0.1:$STACK_S3_PORT is used by another process (see: ss -ltnp)"
    log "s3: a moto server not started by stack.sh answers on $STACK_S3_PORT: using it (down leaves it alone)"
    return 0
  fi
  rm -f "$S3_DIR/s3.pid"
  [[ -f $S3_DIR/s3.log ]] && mv -f "$S3_DIR/s3.log" "$S3_DIR/s3.log.1"
  log "s3: starting moto server on 127.0.0.1:$STACK_S3_PORT"
  # shellcheck disable=SC2016  # $$ is the inner shell's
  MOTO_ENABLE_RECORDING=true MOTO_RECORDER_FILEPATH=$S3_RECORDING \
  setsid nohup bash -c 'echo $$ > "$1"; shift; exec "$@"' s3-launcher "$S3_DIR/s3.pid" \
    "$S3_BIN" -H 127.0.0.1 -p "$STACK_S3_PORT" </dev/null >>"$S3_DIR/s3.log" 2>&1 &
  local start=$SECONDS
  while [[ ! -s $S3_DIR/s3.pid ]] && (( SECONDS - start < 5 )); do sleep 0.1; done
  wait_ready s3 "$S3_TIMEOUT" "$S3_DIR/s3.log" s3_alive s3_ready
  if [[ -s $S3_RECORDING ]]; then
    s3_keep_s3_requests
    log "s3: restoring buckets and objects from $S3_RECORDING ($(du -h "$S3_RECORDING" | cut -f1))"
    curl -fsS -o /dev/null -X POST --max-time 600 \
      "http://127.0.0.1:$STACK_S3_PORT/moto-api/recorder/replay-recording" \
      || fail_with_log "s3: replaying $S3_RECORDING failed" "$S3_DIR/s3.log"
  fi
  log "s3: ready (pid $(s3_pid))"
}

s3_down() {
  local pid; pid=$(s3_pid)
  if [[ -z $pid ]] || ! proc_is "$pid" moto_server; then
    log "s3: not running"; rm -f "$S3_DIR/s3.pid"; return 0
  fi
  log "s3: stopping (pid $pid)"
  stop_pid s3 "$pid"
  rm -f "$S3_DIR/s3.pid"
  log "s3: stopped"
}

# ---------------------------------------------------------------------------
# Document store: FerretDB (MongoDB protocol) on the stack's PostgreSQL
# ---------------------------------------------------------------------------
# Amazon DocumentDB's local counterpart: FerretDB keeps its documents in the
# database $FERRETDB_PG_DB of the plain cluster (pg must be up). A plaintext
# listener and a TLS one (the local CA's server certificate; DocumentDB requires
# TLS); no client authentication (FerretDB logs in to PostgreSQL itself).
docdb_pid()     { read_pid "$DOCDB_DIR/docdb.pid"; }
docdb_alive()   { local p; p=$(docdb_pid); [[ -n $p ]] && proc_is "$p" ferretdb; }
docdb_ready()   { port_open "$STACK_DOCDB_PORT" && port_open "$STACK_DOCDB_TLS_PORT"; }
docdb_running() { docdb_alive && docdb_ready; }

# Build FerretDB once into $FERRETDB_CACHE; needs Go (1.24+) and the Go module proxy.
# `go install ...@v1.24.2` builds a binary that panics at start ("Invalid
# build/version/version.txt": the module zip lacks that generated file), so build
# from a writable copy of the module source with the file written. GOPATH and
# GOCACHE live under the cache and are dropped afterwards: only the binary stays.
docdb_build() {
  [[ -x $FERRETDB_BIN ]] && return 0
  command -v go >/dev/null || die "docdb: Go 1.24+ is needed once to build FerretDB $FERRETDB_VERSION (or put a binary at $FERRETDB_BIN)"
  mkdir -p "$FERRETDB_CACHE"
  local work=$FERRETDB_CACHE/build.$$
  rm -rf "$work"; mkdir -p "$work/empty"
  log "docdb: building FerretDB $FERRETDB_VERSION into $FERRETDB_BIN (once; a few minutes)"
  if ! (
    export GOPATH=$work/gopath GOCACHE=$work/gocache GOFLAGS=-modcacherw GO111MODULE=on
    cd "$work/empty"
    dir=$(go mod download -json "github.com/FerretDB/FerretDB@v$FERRETDB_VERSION" \
            | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -n $dir && -d $dir ]] || { echo "go mod download gave no module directory"; exit 1; }
    cp -r "$dir" "$work/src"
    chmod -R u+w "$work/src"
    printf 'v%s\n' "$FERRETDB_VERSION" > "$work/src/build/version/version.txt"
    cd "$work/src"
    go build -trimpath -o "$work/ferretdb" ./cmd/ferretdb
    "$work/ferretdb" --version
  ) > "$FERRETDB_CACHE/build.log" 2>&1; then
    rm -rf "$work"
    fail_with_log "docdb: building FerretDB failed" "$FERRETDB_CACHE/build.log"
  fi
  mv -f "$work/ferretdb" "$FERRETDB_BIN"
  rm -rf "$work"
  log "docdb: built $FERRETDB_BIN"
}

# The database FerretDB writes to, owned by the stack's role (idempotent).
docdb_provision() {
  pg_running || die "docdb: PostgreSQL (pg) must be up: stack.sh up pg docdb"
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR/run" -p "$STACK_PG_PORT" \
        -U postgres -d postgres -v u="$STACK_PG_USER" -v db="$FERRETDB_PG_DB" >/dev/null <<'SQL' \
    || die "docdb: creating database $FERRETDB_PG_DB failed"
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'u')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
}

docdb_up() {
  pg_setup_bin
  pg_setup_user
  tls_setup
  mkdir -p "$DOCDB_DIR"
  # The arguments, with the certificate's fingerprint: a change restarts the server.
  local args=(--handler=postgresql --listen-addr="127.0.0.1:$STACK_DOCDB_PORT"
              --listen-tls="127.0.0.1:$STACK_DOCDB_TLS_PORT"
              --listen-tls-cert-file="$TLS_DIR/server.pem" --listen-tls-key-file="$TLS_DIR/server.key"
              --state-dir="$DOCDB_DIR" --debug-addr=- --telemetry=disable --log-level=ERROR)
  printf '%s\n' "${args[@]}" "$(tls_fingerprint)" > "$DOCDB_DIR/args.tmp"
  local changed=0
  if install_if_changed "$DOCDB_DIR/args.tmp" "$DOCDB_DIR/args"; then changed=1; fi
  if docdb_alive; then
    if (( ! changed )); then
      wait_ready docdb "$DOCDB_TIMEOUT" "$DOCDB_DIR/docdb.log" docdb_alive docdb_ready
      log "docdb: already running (pid $(docdb_pid), ports $STACK_DOCDB_PORT, TLS $STACK_DOCDB_TLS_PORT)"
      return 0
    fi
    log "docdb: configuration changed (arguments or certificate): restarting"
    docdb_down
  fi
  local p
  for p in "$STACK_DOCDB_PORT" "$STACK_DOCDB_TLS_PORT"; do
    port_open "$p" && die "docdb: port 127.0.0.1:$p is used by another process (see: ss -ltnp)"
  done
  docdb_build
  docdb_provision
  rm -f "$DOCDB_DIR/docdb.pid"
  [[ -f $DOCDB_DIR/docdb.log ]] && mv -f "$DOCDB_DIR/docdb.log" "$DOCDB_DIR/docdb.log.1"
  log "docdb: starting FerretDB $FERRETDB_VERSION on 127.0.0.1:$STACK_DOCDB_PORT (TLS $STACK_DOCDB_TLS_PORT)"
  # The PostgreSQL URL (with the password) travels in the environment, not in argv.
  # shellcheck disable=SC2016  # $$ is the inner shell's
  FERRETDB_POSTGRESQL_URL="postgres://$(urlencode "$STACK_PG_USER"):$(urlencode "$STACK_PG_PASSWORD")@127.0.0.1:$STACK_PG_PORT/$FERRETDB_PG_DB" \
  setsid nohup bash -c 'echo $$ > "$1"; shift; exec "$@"' docdb-launcher "$DOCDB_DIR/docdb.pid" \
    "$FERRETDB_BIN" "${args[@]}" </dev/null >>"$DOCDB_DIR/docdb.log" 2>&1 &
  local start=$SECONDS
  while [[ ! -s $DOCDB_DIR/docdb.pid ]] && (( SECONDS - start < 5 )); do sleep 0.1; done
  wait_ready docdb "$DOCDB_TIMEOUT" "$DOCDB_DIR/docdb.log" docdb_alive docdb_ready
  log "docdb: ready (pid $(docdb_pid))"
}

docdb_down() {
  local pid; pid=$(docdb_pid)
  if [[ -z $pid ]] || ! proc_is "$pid" ferretdb; then
    log "docdb: not running"; rm -f "$DOCDB_DIR/docdb.pid"; return 0
  fi
  log "docdb: stopping (pid $pid)"
  stop_pid docdb "$pid"
  rm -f "$DOCDB_DIR/docdb.pid"
  log "docdb: stopped"
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------
ALL_SERVICES=(pg redis kafka s3 pg-tls redis-tls docdb)

normalize_services() {
  local s out=()
  (( $# )) || set -- "${ALL_SERVICES[@]}"
  for s in "$@"; do
    case $s in
      pg|postgres|postgresql) out+=(pg) ;;
      redis) out+=(redis) ;;
      kafka) out+=(kafka) ;;
      s3|moto) out+=(s3) ;;
      pg-tls|postgres-tls) out+=(pg_tls) ;;
      redis-tls) out+=(redis_tls) ;;
      docdb|documentdb|ferretdb) out+=(docdb) ;;
      *) die "unknown service '$s' (pg|redis|kafka|s3|pg-tls|redis-tls|docdb)" ;;
    esac
  done
  # In the order of ALL_SERVICES, once each: up starts pg before docdb (which needs it)
  # and down, reversing, stops docdb before pg, whatever order they were named in.
  local want ordered=()
  for want in pg redis kafka s3 pg_tls redis_tls docdb; do
    for s in "${out[@]}"; do
      if [[ $s == "$want" ]]; then ordered+=("$want"); break; fi
    done
  done
  printf '%s\n' "${ordered[@]}"
}

cmd_up() {
  local s svcs t0=$SECONDS
  svcs=$(normalize_services "$@")
  reserve_ports "$STACK_PG_PORT" "$STACK_REDIS_PORT" "$STACK_KAFKA_PORT" "$STACK_KAFKA_CONTROLLER_PORT" \
                "$STACK_PG_TLS_PORT" "$STACK_REDIS_TLS_PORT" "$STACK_KAFKA_SASL_PORT" "$STACK_S3_PORT" \
                "$STACK_DOCDB_PORT" "$STACK_DOCDB_TLS_PORT"
  for s in $svcs; do "${s}_up"; done
  log "up done in $((SECONDS - t0))s"
  cmd_status >&2 || true
}

cmd_down() {
  local s svcs
  svcs=$(normalize_services "$@")
  # Reverse order: docdb, redis-tls, pg-tls, s3, kafka, redis, pg.
  for s in $(printf '%s\n' "$svcs" | tac); do "${s}_down"; done
}

cmd_status() {
  pg_find_bin || true
  local rc=0 state pid
  # pg
  if [[ -n $PG_BIN ]] && pg_running; then state=up; pid=$(pg_pid); else state=down; pid=-; rc=3; fi
  printf '%-9s %-4s 127.0.0.1:%-5s  pid %s\n' postgres "$state" "$STACK_PG_PORT" "$pid"
  if command -v redis-cli >/dev/null && redis_running; then state=up; pid=$(redis_pid); else state=down; pid=-; rc=3; fi
  printf '%-9s %-4s 127.0.0.1:%-5s  pid %s\n' redis "$state" "$STACK_REDIS_PORT" "$pid"
  if kafka_running; then state=up; pid=$(kafka_pid); else state=down; pid=-; rc=3; fi
  printf '%-9s %-4s 127.0.0.1:%-5s  pid %s  (SASL_SSL 127.0.0.1:%s)\n' kafka "$state" "$STACK_KAFKA_PORT" "$pid" "$STACK_KAFKA_SASL_PORT"
  if s3_running; then state=up; pid=$(s3_pid); elif s3_foreign; then state=up; pid='- (not started by stack.sh)'; else state=down; pid=-; rc=3; fi
  printf '%-9s %-4s 127.0.0.1:%-5s  pid %s\n' s3 "$state" "$STACK_S3_PORT" "$pid"
  if [[ -n $PG_BIN ]] && with_pg_tls pg_running; then state=up; pid=$(with_pg_tls pg_pid); else state=down; pid=-; rc=3; fi
  printf '%-9s %-4s 127.0.0.1:%-5s  pid %s  (TLS only)\n' pg-tls "$state" "$STACK_PG_TLS_PORT" "$pid"
  if command -v redis-cli >/dev/null && [[ -f $TLS_DIR/ca.pem ]] && redis_tls_running; then state=up; pid=$(redis_tls_pid); else state=down; pid=-; rc=3; fi
  printf '%-9s %-4s 127.0.0.1:%-5s  pid %s  (TLS + AUTH)\n' redis-tls "$state" "$STACK_REDIS_TLS_PORT" "$pid"
  if docdb_running; then state=up; pid=$(docdb_pid); else state=down; pid=-; rc=3; fi
  printf '%-9s %-4s 127.0.0.1:%-5s  pid %s  (TLS 127.0.0.1:%s)\n' docdb "$state" "$STACK_DOCDB_PORT" "$pid" "$STACK_DOCDB_TLS_PORT"
  return $rc
}

# The lake's S3 endpoint (plain HTTP in both variants: moto serves no TLS); the same
# moto server is the local EventBridge (and SQS, its rules' targets) and Timestream.
s3_env() {
  printf 'export QIS_LAKE__ENDPOINT_URL=%q\n' "http://127.0.0.1:$STACK_S3_PORT"
  printf 'export QIS_LAKE__ACCESS_KEY_ID=testing\n'
  printf 'export QIS_LAKE__SECRET_ACCESS_KEY=testing\n'
  # The same moto server serves Timestream (timestream-write) and its rejected-records bucket.
  printf 'export QIS_TIMESTREAM__ENDPOINT_URL=%q\n' "http://127.0.0.1:$STACK_S3_PORT"
  printf 'export QIS_TIMESTREAM__ACCESS_KEY_ID=testing\n'
  printf 'export QIS_TIMESTREAM__SECRET_ACCESS_KEY=testing\n'
  printf 'export QIS_EVENTBRIDGE__ENDPOINT_URL=%q\n' "http://127.0.0.1:$STACK_S3_PORT"
  printf 'export QIS_EVENTBRIDGE__ACCESS_KEY_ID=testing\n'
  printf 'export QIS_EVENTBRIDGE__SECRET_ACCESS_KEY=testing\n'
}

# The descriptor document store (FerretDB): plaintext, or TLS checked against the CA.
docdb_env() {
  printf 'export QIS_DOCUMENTS__ENABLED=true\n'
  if [[ $1 == secure ]]; then
    printf 'export QIS_DOCUMENTS__URL=%q\n' "mongodb://127.0.0.1:$STACK_DOCDB_TLS_PORT/?tls=true"
    printf 'export QIS_DOCUMENTS__TLS_CA_FILE=%q\n' "$TLS_DIR/ca.pem"
  else
    printf 'export QIS_DOCUMENTS__URL=%q\n' "mongodb://127.0.0.1:$STACK_DOCDB_PORT/"
  fi
}

cmd_env() {
  local dsn ca=$TLS_DIR/ca.pem
  case ${1:-plain} in
    plain)
      dsn="postgresql://$(urlencode "$STACK_PG_USER"):$(urlencode "$STACK_PG_PASSWORD")@127.0.0.1:$STACK_PG_PORT/$(urlencode "$STACK_PG_DB")"
      printf 'export QIS_DB__WRITER_DSN=%q\n' "$dsn"
      printf 'export QIS_DB__READER_DSN=%q\n' "$dsn"
      printf 'export QIS_KAFKA__BOOTSTRAP_SERVERS=%q\n' "127.0.0.1:$STACK_KAFKA_PORT"
      printf 'export QIS_REDIS__URL=%q\n' "redis://127.0.0.1:$STACK_REDIS_PORT/0"
      s3_env
      docdb_env plain
      ;;
    secure)
      # The secured endpoints, with certificate and host name verification.
      dsn="postgresql://$(urlencode "$STACK_PG_USER"):$(urlencode "$STACK_PG_PASSWORD")@127.0.0.1:$STACK_PG_TLS_PORT/$(urlencode "$STACK_PG_DB")"
      printf 'export QIS_DB__WRITER_DSN=%q\n' "$dsn"
      printf 'export QIS_DB__READER_DSN=%q\n' "$dsn"
      printf 'export QIS_DB__SSL_MODE=verify-full\n'
      printf 'export QIS_DB__SSL_ROOT_CERT=%q\n' "$ca"
      printf 'export QIS_KAFKA__BOOTSTRAP_SERVERS=%q\n' "127.0.0.1:$STACK_KAFKA_SASL_PORT"
      printf 'export QIS_KAFKA__SECURITY_PROTOCOL=SASL_SSL\n'
      printf 'export QIS_KAFKA__SASL_MECHANISM=SCRAM-SHA-512\n'
      printf 'export QIS_KAFKA__SASL_USERNAME=%q\n' "$STACK_KAFKA_SASL_USER"
      printf 'export QIS_KAFKA__SASL_PASSWORD=%q\n' "$STACK_KAFKA_SASL_PASSWORD"
      printf 'export QIS_KAFKA__SSL_CA_FILE=%q\n' "$ca"
      printf 'export QIS_REDIS__URL=%q\n' "rediss://127.0.0.1:$STACK_REDIS_TLS_PORT/0"
      printf 'export QIS_REDIS__PASSWORD=%q\n' "$STACK_REDIS_TLS_PASSWORD"
      printf 'export QIS_REDIS__SSL_CA_FILE=%q\n' "$ca"
      s3_env
      docdb_env secure
      ;;
    *) die "usage: stack.sh env [plain|secure]" ;;
  esac
}

cmd_logs() {
  local svc f
  svc=$(normalize_services "${1:?usage: stack.sh logs pg|redis|kafka|s3|pg-tls|redis-tls|docdb [-f]}")
  case $svc in
    pg) f=$PG_DIR/pg.log ;;
    redis) f=$REDIS_DIR/redis.log ;;
    kafka) f=$KAFKA_DIR/kafka.log ;;
    s3) f=$S3_DIR/s3.log ;;
    pg_tls) f=$PG_TLS_DIR/pg.log ;;
    redis_tls) f=$REDIS_TLS_DIR/redis.log ;;
    docdb) f=$DOCDB_DIR/docdb.log ;;
  esac
  [[ -f $f ]] || die "no log yet at $f"
  if [[ ${2:-} == -f ]]; then exec tail -n 100 -F "$f"; else tail -n "${STACK_LOG_LINES:-100}" "$f"; fi
}

cmd_kafka_topics() {
  [[ -f $KAFKA_LIBS/.complete ]] || die "Kafka jars not fetched yet: run 'stack.sh up kafka' first"
  mkdir -p "$KAFKA_DIR"
  [[ -f $KAFKA_DIR/tools-log4j.properties ]] || kafka_write_tools_conf
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$STACK_KAFKA_PORT" "$@"
}

usage() {
  sed -n '3,20p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

main() {
  local cmd=${1:-}
  (( $# )) && shift
  case $cmd in
    up|down)
      mkdir -p "$STACK_DIR"
      # Serialize concurrent up/down. flock -o: the lock fd is not inherited by
      # the re-executed script, hence not by the daemons it starts.
      if [[ -z ${_STACK_LOCKED:-} ]] && command -v flock >/dev/null; then
        _STACK_LOCKED=1 exec flock -o -w 600 "$STACK_DIR/.stack.lock" bash "$SCRIPT_PATH" "$cmd" "$@"
      fi
      unset _STACK_LOCKED   # not for the daemons we start
      "cmd_$cmd" "$@" ;;
    status) cmd_status ;;
    env) cmd_env "$@" ;;
    logs) cmd_logs "$@" ;;
    kafka-topics) cmd_kafka_topics "$@" ;;
    -h|--help|help) usage 0 ;;
    *) usage 2 >&2 ;;
  esac
}

main "$@"
