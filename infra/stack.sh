#!/usr/bin/env bash
# The local stack: one KRaft Kafka broker and one OpenSearch node, on 127.0.0.1 only,
# fetched from Maven Central by infra/pom.xml. Driven by infra/up, infra/down, infra/status.
#
# Every process is tracked by a pid file whose /proc/<pid>/cmdline is checked before it is
# trusted, so a stale pid file (a reboot, a kill -9) is detected and never kills a stranger.
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$INFRA_DIR")"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$INFRA_DIR/pom.xml")"
OPENSEARCH_VERSION="$(sed -n 's:.*<opensearch.version>\(.*\)</opensearch.version>.*:\1:p' "$INFRA_DIR/pom.xml")"

KAFKA_PORT="${TRACESTREAM_STACK_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${TRACESTREAM_STACK_KAFKA_CONTROLLER_PORT:-9093}"
OPENSEARCH_PORT="${TRACESTREAM_STACK_OPENSEARCH_PORT:-9200}"
OPENSEARCH_TRANSPORT_PORT="${TRACESTREAM_STACK_OPENSEARCH_TRANSPORT_PORT:-9300}"
KAFKA_HEAP="${TRACESTREAM_STACK_KAFKA_HEAP:-512m}"
OPENSEARCH_HEAP="${TRACESTREAM_STACK_OPENSEARCH_HEAP:-1g}"
# OpenSearch refuses to run as root; when we are root it runs as this system user.
OPENSEARCH_USER="${TRACESTREAM_STACK_USER:-tracestream}"
READY_TIMEOUT_S="${TRACESTREAM_STACK_READY_TIMEOUT:-120}"

DIST_DIR="$INFRA_DIR/.stack/dist"
STACK_DIR="${TRACESTREAM_STACK_DIR:-$INFRA_DIR/.stack}"
KAFKA_HOME="$DIST_DIR/kafka-$KAFKA_VERSION"
KAFKA_DIR="$STACK_DIR/kafka"
KAFKA_PID="$STACK_DIR/kafka.pid"
OPENSEARCH_PID="$STACK_DIR/opensearch.pid"
# Where OpenSearch runs is chosen at the first `up` and remembered (see opensearch_dir).
OPENSEARCH_LOCATION="$STACK_DIR/opensearch.location"

# OpenSearch's java 17: 2.x needs the SecurityManager, which JDK >= 24 no longer has.
JAVA17_HOME="${TRACESTREAM_STACK_JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}"

log() { printf '[infra] %s\n' "$*"; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

java_home() {
  if [ -x "$JAVA17_HOME/bin/java" ]; then
    echo "$JAVA17_HOME"
  elif [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    echo "$JAVA_HOME"
  else
    dirname "$(dirname "$(readlink -f "$(command -v java)")")"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive FILE PATTERN: the pid in FILE runs and its command line contains PATTERN.
pid_alive() {
  local file=$1 pattern=$2 pid
  [ -s "$file" ] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern"
}

# A pid file whose process is gone, or is now some other program, is stale.
clear_stale() {
  local name=$1 file=$2 pattern=$3
  if [ -e "$file" ] && ! pid_alive "$file" "$pattern"; then
    log "$name: stale pid file $file (pid $(cat "$file" 2>/dev/null || echo '?') is not $name): removed"
    rm -f "$file"
  fi
}

tail_log() {
  local name=$1 file=$2
  printf '[infra] --- last lines of %s (%s) ---\n' "$name" "$file" >&2
  if [ -f "$file" ]; then tail -n 40 "$file" >&2; else echo "(no log file)" >&2; fi
  printf '[infra] ---\n' >&2
}

fetch() {
  if [ -d "$KAFKA_HOME/libs" ] && [ -x "$DIST_DIR/opensearch-$OPENSEARCH_VERSION/bin/opensearch" ]; then
    return
  fi
  command -v mvn >/dev/null || die "mvn not found: Maven fetches the servers from Maven Central"
  log "fetching Kafka $KAFKA_VERSION and OpenSearch $OPENSEARCH_VERSION with Maven (cached in ~/.m2)"
  mkdir -p "$INFRA_DIR/.stack"
  if ! mvn -B -f "$INFRA_DIR/pom.xml" package >"$INFRA_DIR/.stack/fetch.log" 2>&1; then
    tail_log "mvn -f infra/pom.xml package" "$INFRA_DIR/.stack/fetch.log"
    die "fetching the servers with Maven failed"
  fi
}

# ---------------------------------------------------------------- Kafka

kafka_config() {
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  cat >"$KAFKA_DIR/server.properties" <<EOF
# Written by infra/up on every start; edit infra/stack.sh instead.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
# Faust's changelog topics are compacted, so the cleaner runs; its default 128 MB buffer
# is most of a small heap.
log.cleaner.dedupe.buffer.size=33554432
EOF
  cat >"$KAFKA_DIR/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, kafkaAppender
log4j.appender.kafkaAppender=org.apache.log4j.RollingFileAppender
log4j.appender.kafkaAppender.File=${kafka.logs.dir}/server.log
log4j.appender.kafkaAppender.MaxFileSize=20MB
log4j.appender.kafkaAppender.MaxBackupIndex=3
log4j.appender.kafkaAppender.layout=org.apache.log4j.PatternLayout
log4j.appender.kafkaAppender.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
EOF
}

kafka_java() {
  "$(java_home)/bin/java" -cp "$KAFKA_HOME/libs/*" \
    -Dkafka.logs.dir="$KAFKA_DIR/logs" -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" "$@"
}

kafka_up() {
  clear_stale kafka "$KAFKA_PID" kafka.Kafka
  if pid_alive "$KAFKA_PID" kafka.Kafka; then
    log "kafka: already running (pid $(cat "$KAFKA_PID")) on 127.0.0.1:$KAFKA_PORT"
    KAFKA_WAS_RUNNING=1
    return
  fi
  if port_open "$KAFKA_PORT"; then
    die "kafka: 127.0.0.1:$KAFKA_PORT is taken by a process infra/ did not start; stop it, or point TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS at it and skip infra/up"
  fi
  kafka_config
  # The cluster id is kept: `format` checks it against the data dir even with --ignore-formatted.
  [ -s "$KAFKA_DIR/cluster.id" ] || kafka_java kafka.tools.StorageTool random-uuid >"$KAFKA_DIR/cluster.id"
  kafka_java kafka.tools.StorageTool format -c "$KAFKA_DIR/server.properties" \
    -t "$(cat "$KAFKA_DIR/cluster.id")" --ignore-formatted >>"$KAFKA_DIR/logs/format.log" 2>&1 \
    || { tail_log "kafka storage format" "$KAFKA_DIR/logs/format.log"; die "kafka: storage format failed"; }
  : >"$KAFKA_DIR/logs/server.log"
  nohup "$(java_home)/bin/java" "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -cp "$KAFKA_HOME/libs/*" -Dkafka.logs.dir="$KAFKA_DIR/logs" \
    -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
    kafka.Kafka "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$KAFKA_PID"
  log "kafka: starting (pid $!)"
}

kafka_wait() {
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  # A broker that was already running logged its start long ago, maybe into a file log4j has
  # rolled over since (server.log.1): its open port is the readiness to wait for.
  local started_marker='Kafka Server started'
  [ "${KAFKA_WAS_RUNNING:-0}" -eq 1 ] && started_marker=''
  until { [ -z "$started_marker" ] || grep -q "$started_marker" "$KAFKA_DIR/logs/server.log" 2>/dev/null; } \
      && port_open "$KAFKA_PORT"; do
    if ! pid_alive "$KAFKA_PID" kafka.Kafka; then
      tail_log kafka "$KAFKA_DIR/logs/stdout.log"; tail_log kafka "$KAFKA_DIR/logs/server.log"
      die "kafka: the broker exited during start"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail_log kafka "$KAFKA_DIR/logs/server.log"
      die "kafka: not ready after ${READY_TIMEOUT_S}s"
    fi
    sleep 0.5
  done
  log "kafka: ready on 127.0.0.1:$KAFKA_PORT (logs: $KAFKA_DIR/logs/server.log)"
}

# ---------------------------------------------------------------- OpenSearch

# Where OpenSearch lives at run time. Every parent directory must be traversable by the
# OpenSearch user; when the checkout is not (a clone under /root), the node runs from /var/tmp.
# The choice is made once, after the user exists, and remembered for down/status.
opensearch_dir() {
  if [ -s "$OPENSEARCH_LOCATION" ]; then
    cat "$OPENSEARCH_LOCATION"
  elif [ "$(id -u)" -eq 0 ] && id -u "$OPENSEARCH_USER" >/dev/null 2>&1 \
     && ! setpriv --reuid="$OPENSEARCH_USER" --regid="$OPENSEARCH_USER" --init-groups -- test -x "$STACK_DIR" 2>/dev/null; then
    echo "/var/tmp/tracestream-stack-$(printf '%s' "$STACK_DIR" | sha1sum | cut -c1-12)/opensearch"
  else
    echo "$STACK_DIR/opensearch"
  fi
}

ensure_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if ! id -u "$OPENSEARCH_USER" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$OPENSEARCH_USER" \
      || die "could not create system user $OPENSEARCH_USER (OpenSearch refuses to run as root)"
    log "created system user $OPENSEARCH_USER to run OpenSearch (it refuses root)"
  fi
}

opensearch_health() {
  curl -fsS --max-time 5 "http://127.0.0.1:$OPENSEARCH_PORT/_cluster/health?wait_for_status=yellow&timeout=${1:-1s}" >/dev/null 2>&1
}

opensearch_up() {
  local dir home
  clear_stale opensearch "$OPENSEARCH_PID" org.opensearch.bootstrap.OpenSearch
  if pid_alive "$OPENSEARCH_PID" org.opensearch.bootstrap.OpenSearch; then
    log "opensearch: already running (pid $(cat "$OPENSEARCH_PID")) on 127.0.0.1:$OPENSEARCH_PORT"
    return
  fi
  if port_open "$OPENSEARCH_PORT"; then
    die "opensearch: 127.0.0.1:$OPENSEARCH_PORT is taken by a process infra/ did not start; stop it, or point TRACESTREAM_OPENSEARCH__URL at it and skip infra/up"
  fi
  ensure_user
  dir="$(opensearch_dir)"
  home="$dir/home"
  mkdir -p "$dir/data" "$dir/logs" "$dir/config"
  echo "$dir" >"$OPENSEARCH_LOCATION"
  # A private copy of the distribution: the node writes into its home (plugins dir, keystore)
  # and must be able to read it as the unprivileged user.
  if [ ! -x "$home/bin/opensearch" ] || [ "$(cat "$dir/version" 2>/dev/null)" != "$OPENSEARCH_VERSION" ]; then
    rm -rf "$home"
    cp -a "$DIST_DIR/opensearch-$OPENSEARCH_VERSION" "$home"
    echo "$OPENSEARCH_VERSION" >"$dir/version"
  fi
  cp "$home/config/jvm.options" "$home/config/log4j2.properties" "$dir/config/"
  [ -d "$home/config/jvm.options.d" ] && cp -r "$home/config/jvm.options.d" "$dir/config/"
  cat >"$dir/config/opensearch.yml" <<EOF
# Written by infra/up on every start; edit infra/stack.sh instead.
cluster.name: tracestream-local
node.name: tracestream-local-1
discovery.type: single-node
network.host: 127.0.0.1
http.port: $OPENSEARCH_PORT
transport.port: $OPENSEARCH_TRANSPORT_PORT
path.data: $dir/data
path.logs: $dir/logs
# No mmap: then the host's vm.max_map_count does not matter.
node.store.allow_mmap: false
# A development node on a shared disk: never go read-only because the disk is 90% full.
cluster.routing.allocation.disk.threshold_enabled: false
action.auto_create_index: true
EOF
  local -a as_user=()
  if [ "$(id -u)" -eq 0 ]; then
    chown -R "$OPENSEARCH_USER:$OPENSEARCH_USER" "$dir"
    as_user=(setpriv --reuid="$OPENSEARCH_USER" --regid="$OPENSEARCH_USER" --init-groups --)
  fi
  : >"$dir/logs/stdout.log"
  [ "$(id -u)" -eq 0 ] && chown "$OPENSEARCH_USER:$OPENSEARCH_USER" "$dir/logs/stdout.log"
  local jh
  jh="$(java_home)"
  # setpriv, env and bin/opensearch each exec the next, so $! ends up being the JVM's pid.
  nohup "${as_user[@]}" env OPENSEARCH_JAVA_HOME="$jh" JAVA_HOME="$jh" OPENSEARCH_PATH_CONF="$dir/config" \
    OPENSEARCH_JAVA_OPTS="-Xms$OPENSEARCH_HEAP -Xmx$OPENSEARCH_HEAP" \
    "$home/bin/opensearch" >"$dir/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$OPENSEARCH_PID"
  log "opensearch: starting (pid $!)"
}

opensearch_wait() {
  local dir deadline=$((SECONDS + READY_TIMEOUT_S))
  dir="$(opensearch_dir)"
  until opensearch_health 2s; do
    # Until the launcher execs the JVM, the command line is still bin/opensearch's.
    if ! pid_alive "$OPENSEARCH_PID" opensearch; then
      tail_log opensearch "$dir/logs/stdout.log"; tail_log opensearch "$dir/logs/tracestream-local.log"
      die "opensearch: the node exited during start"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail_log opensearch "$dir/logs/tracestream-local.log"
      die "opensearch: not healthy after ${READY_TIMEOUT_S}s"
    fi
    sleep 1
  done
  log "opensearch: ready on http://127.0.0.1:$OPENSEARCH_PORT (logs: $dir/logs/tracestream-local.log)"
}

# ---------------------------------------------------------------- commands

stop_pid() {
  local name=$1 file=$2 pattern=$3 pid i
  clear_stale "$name" "$file" "$pattern"
  if ! pid_alive "$file" "$pattern"; then
    log "$name: not running"
    return
  fi
  pid="$(tr -dc '0-9' <"$file")"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 60); do
    [ -d "/proc/$pid" ] || break
    sleep 0.5
  done
  if [ -d "/proc/$pid" ]; then
    log "$name: still running after 30s, sending SIGKILL to pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$file"
  log "$name: stopped (pid $pid)"
}

# Which servers a command acts on: both by default, or those named ("kafka", "opensearch").
select_servers() {
  WANT_KAFKA=0; WANT_OPENSEARCH=0
  [ $# -eq 0 ] && { WANT_KAFKA=1; WANT_OPENSEARCH=1; }
  for arg in "$@"; do
    case "$arg" in
      kafka) WANT_KAFKA=1 ;;
      opensearch) WANT_OPENSEARCH=1 ;;
      *) return 1 ;;
    esac
  done
}

cmd_up() {
  select_servers "$@" || die "usage: infra/up [kafka] [opensearch]"
  fetch
  [ $WANT_KAFKA -eq 1 ] && kafka_up
  [ $WANT_OPENSEARCH -eq 1 ] && opensearch_up
  [ $WANT_KAFKA -eq 1 ] && kafka_wait
  [ $WANT_OPENSEARCH -eq 1 ] && opensearch_wait
  return 0
}

cmd_down() {
  local purge=0 servers=()
  for arg in "$@"; do
    case "$arg" in
      --purge) purge=1 ;;
      *) servers+=("$arg") ;;
    esac
  done
  select_servers "${servers[@]}" || die "usage: infra/down [--purge] [kafka] [opensearch]"
  if [ $purge -eq 1 ] && [ ${#servers[@]} -gt 0 ]; then
    die "--purge removes the whole stack's data; use it without naming servers"
  fi
  local os_dir
  os_dir="$(opensearch_dir)"
  [ $WANT_KAFKA -eq 1 ] && stop_pid kafka "$KAFKA_PID" kafka.Kafka
  [ $WANT_OPENSEARCH -eq 1 ] && stop_pid opensearch "$OPENSEARCH_PID" org.opensearch.bootstrap.OpenSearch
  if [ $purge -eq 1 ]; then
    rm -rf "$KAFKA_DIR" "$os_dir" "$STACK_DIR/kafka.pid" "$OPENSEARCH_PID" "$OPENSEARCH_LOCATION"
    case "$os_dir" in /var/tmp/tracestream-stack-*) rmdir "$(dirname "$os_dir")" 2>/dev/null || true ;; esac
    log "purged data and logs ($KAFKA_DIR, $os_dir); downloads kept in $DIST_DIR"
  fi
}

# Exit status 0 when both servers run and are healthy, 1 otherwise.
cmd_status() {
  local quiet=0 rc=0 os_dir
  [ "${1:-}" = "-q" ] || [ "${1:-}" = "--quiet" ] && quiet=1
  os_dir="$(opensearch_dir)"
  say() { [ $quiet -eq 1 ] || printf '%s\n' "$*"; }
  if pid_alive "$KAFKA_PID" kafka.Kafka && port_open "$KAFKA_PORT"; then
    say "kafka       running  pid $(cat "$KAFKA_PID")  127.0.0.1:$KAFKA_PORT  logs $KAFKA_DIR/logs/server.log"
  elif [ -e "$KAFKA_PID" ] && ! pid_alive "$KAFKA_PID" kafka.Kafka; then
    say "kafka       stopped  (stale pid file $KAFKA_PID)"; rc=1
  else
    say "kafka       stopped"; rc=1
  fi
  if pid_alive "$OPENSEARCH_PID" org.opensearch.bootstrap.OpenSearch; then
    if opensearch_health; then
      say "opensearch  running  pid $(cat "$OPENSEARCH_PID")  http://127.0.0.1:$OPENSEARCH_PORT  logs $os_dir/logs/tracestream-local.log"
    else
      say "opensearch  starting (not healthy yet)  pid $(cat "$OPENSEARCH_PID")"; rc=1
    fi
  elif [ -e "$OPENSEARCH_PID" ]; then
    say "opensearch  stopped  (stale pid file $OPENSEARCH_PID)"; rc=1
  else
    say "opensearch  stopped"; rc=1
  fi
  return $rc
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) shift; cmd_status "$@" ;;
  *) die "usage: infra/stack.sh up [kafka|opensearch]|down [--purge] [kafka|opensearch]|status [-q]" ;;
esac
