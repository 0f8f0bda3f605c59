#!/usr/bin/env bash
# Agora's local stack: Apache Kafka (KRaft, single node), FerretDB (MongoDB wire protocol) over a
# private PostgreSQL cluster (or over SQLite) and Redis, installed from package registries only
# and run as plain processes.
#
# Usage:
#   stack.sh up                      install on first use, start all, wait, create topics
#   stack.sh down                    stop all (SIGTERM, then SIGKILL after a timeout)
#   stack.sh status                  one line per service; exit 0 if all up, 3 otherwise
#   stack.sh start <kafka|postgres|ferretdb|redis>
#   stack.sh stop  <kafka|postgres|ferretdb|redis>
#   stack.sh restart <kafka|postgres|ferretdb|redis>
#   stack.sh topics [prefix]         create the topics of topics.txt as <prefix>.<name>
#   stack.sh install                 only download/build into the cache (and apt packages)
#   stack.sh env                     print the addresses as shell assignments
# (`start ferretdb` also starts postgres when the backend is postgresql and it is down;
# `stop ferretdb` stops FerretDB only.)
#
# Environment (all optional):
#   AGORA_STACK_DIR                    data/, logs/, run/ of this instance  [<repo>/.local/stack]
#   AGORA_CACHE_DIR                    downloads and builds, shared by clones
#                                      [${XDG_CACHE_HOME:-$HOME/.cache}/agora]
#   AGORA_STACK_KAFKA_PORT             Kafka PLAINTEXT listener             [9092]
#   AGORA_STACK_KAFKA_CONTROLLER_PORT  Kafka KRaft controller listener      [9093]
#   AGORA_STACK_MONGO_PORT             FerretDB (MongoDB wire protocol)     [27017]
#   AGORA_STACK_REDIS_PORT             Redis                                [6379]
#   AGORA_STACK_FERRETDB_BACKEND       postgresql | sqlite                  [postgresql]
#   AGORA_STACK_POSTGRES_PORT          the private PostgreSQL (postgresql backend) [54320]
#   AGORA_STACK_POSTGRES_BINDIR        PostgreSQL binaries  [newest /usr/lib/postgresql/*/bin]
#   AGORA_STACK_POSTGRES_OS_USER       OS user running PostgreSQL when run as root  [postgres]
#   AGORA_STACK_KAFKA_VERSION          org.apache.kafka:kafka_2.13 version  [4.1.1]
#   AGORA_STACK_LOG4J_VERSION          log4j2 (core + SLF4J 2 binding)      [2.24.3]
#   AGORA_STACK_SLF4J_VERSION          slf4j-api                            [2.0.17]
#   AGORA_STACK_KAFKA_HEAP             broker heap options                  [-Xms256m -Xmx768m]
#   AGORA_STACK_WAIT_SECS              how long to wait for a service to answer      [60]
#   AGORA_STACK_STOP_SECS              SIGTERM grace period before SIGKILL           [30]
#   AGORA_TOPIC_PREFIX                 topic prefix for `up` and `topics`            [agora]
#   AGORA_TOPIC_PARTITIONS             partitions of each created topic              [12]
#   JAVA                               java binary                                   [java]
# Everything binds 127.0.0.1 only. Two instances can run side by side with different
# AGORA_STACK_DIR and ports.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

HOST=127.0.0.1
STACK_DIR=${AGORA_STACK_DIR:-$REPO_ROOT/.local/stack}
[[ $STACK_DIR == /* ]] || STACK_DIR=$PWD/$STACK_DIR # services run with other working dirs
CACHE_DIR=${AGORA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agora}
KAFKA_PORT=${AGORA_STACK_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${AGORA_STACK_KAFKA_CONTROLLER_PORT:-9093}
MONGO_PORT=${AGORA_STACK_MONGO_PORT:-27017}
REDIS_PORT=${AGORA_STACK_REDIS_PORT:-6379}
FERRETDB_BACKEND=${AGORA_STACK_FERRETDB_BACKEND:-postgresql}
POSTGRES_PORT=${AGORA_STACK_POSTGRES_PORT:-54320}
POSTGRES_BINDIR=${AGORA_STACK_POSTGRES_BINDIR:-}
POSTGRES_OS_USER=${AGORA_STACK_POSTGRES_OS_USER:-postgres}
KAFKA_VERSION=${AGORA_STACK_KAFKA_VERSION:-4.1.1}
LOG4J_VERSION=${AGORA_STACK_LOG4J_VERSION:-2.24.3}
SLF4J_VERSION=${AGORA_STACK_SLF4J_VERSION:-2.0.17}
KAFKA_HEAP=${AGORA_STACK_KAFKA_HEAP:--Xms256m -Xmx768m}
WAIT_SECS=${AGORA_STACK_WAIT_SECS:-60}
STOP_SECS=${AGORA_STACK_STOP_SECS:-30}
TOPIC_PREFIX=${AGORA_TOPIC_PREFIX:-agora}
TOPIC_PARTITIONS=${AGORA_TOPIC_PARTITIONS:-12}
JAVA=${JAVA:-java}

DATA_DIR=$STACK_DIR/data
LOG_DIR=$STACK_DIR/logs
RUN_DIR=$STACK_DIR/run

KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
KAFKA_LIBS=$KAFKA_HOME/libs
KAFKA_DATA=$DATA_DIR/kafka
KAFKA_PROPS=$RUN_DIR/kafka.properties
KAFKA_PID=$RUN_DIR/kafka.pid
KAFKA_LOG=$LOG_DIR/kafka.log # log4j2 (broker)
KAFKA_OUT=$LOG_DIR/kafka.out # JVM stdout/stderr

FERRETDB_SRC=$SCRIPT_DIR/ferretdb
FERRETDB_DATA=$DATA_DIR/ferretdb
FERRETDB_PID=$RUN_DIR/ferretdb.pid
FERRETDB_LOG=$LOG_DIR/ferretdb.log
FERRETDB_BIN="" # set by install_ferretdb

REDIS_DATA=$DATA_DIR/redis
REDIS_PID=$RUN_DIR/redis.pid
REDIS_LOG=$LOG_DIR/redis.log
REDIS_OUT=$LOG_DIR/redis.out # stdout/stderr before it daemonizes

# PostgreSQL (FerretDB's backend with AGORA_STACK_FERRETDB_BACKEND=postgresql): a private cluster
# per instance. Its data dir is data/postgres and its socket dir run/postgres, unless the OS user
# that runs it (root cannot) cannot reach the stack dir (e.g. a clone under /root, mode 0700):
# then both live in that user's home, <home>/agora-stacks/<hash of the stack dir>/{data,run},
# and data/postgres is a symlink to it (see pg_place_cluster).
PG_LINK=$DATA_DIR/postgres
PG_DATA=$PG_LINK
PG_SOCK=$RUN_DIR/postgres
if [[ -L $PG_LINK ]]; then
	PG_DATA=$(readlink "$PG_LINK")
	PG_SOCK=$(dirname "$PG_DATA")/run
fi
PG_PID=$RUN_DIR/postgres.pid
PG_LOG=$LOG_DIR/postgres.log
PG_DB=ferretdb
PG_SUPERUSER=postgres # the cluster's superuser role (initdb -U), whatever OS user runs it
PG_SQL=$SCRIPT_DIR/postgres/ferretdb-gin.sql
PG_BIN="" # set by pg_find_bin
# The URL FerretDB connects with (TCP: no socket-path length limit; trust auth). FerretDB's pool
# default is 50 connections, and an open cursor holds one: allow more (max_connections is 300).
PG_URL="postgres://$PG_SUPERUSER@$HOST:$POSTGRES_PORT/$PG_DB?pool_max_conns=200"

if [[ $FERRETDB_BACKEND == postgresql ]]; then
	SERVICES=(kafka postgres ferretdb redis)
else
	SERVICES=(kafka ferretdb redis)
fi

# ---------------------------------------------------------------------------------------------
# helpers

say() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die() {
	printf '[stack] ERROR: %s\n' "$*" >&2
	exit 1
}

now() { date +%s; }

TMP_PATHS=()
cleanup_tmp() {
	local p
	for p in "${TMP_PATHS[@]+"${TMP_PATHS[@]}"}"; do
		[[ -n $p && -e $p ]] && rm -rf -- "$p"
	done
	return 0
}
trap cleanup_tmp EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

check_port_number() { # name value
	if ! [[ $2 =~ ^[0-9]+$ ]] || ((10#$2 < 1 || 10#$2 > 65535)); then
		die "$1 must be a TCP port number, got '$2'"
	fi
}

# Is something accepting TCP connections on HOST:port?
port_open() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

# Pids listening on a TCP port (needs ss from iproute2; prints nothing without it).
port_pids() {
	command -v ss >/dev/null 2>&1 || return 0
	ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}

# A pid that exists and is not a zombie.
pid_alive() {
	local pid=$1 state
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/stat ]] || return 1
	state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
	[[ $state != Z && $state != X ]]
}

# Does the command line of pid contain every given string?
pid_cmdline_has() {
	local pid=$1 cmdline s
	shift
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	for s in "$@"; do
		[[ $cmdline == *"$s"* ]] || return 1
	done
}

# What identifies each service's process as this instance's (in /proc/<pid>/cmdline).
svc_marker() {
	case $1 in
	kafka) printf '%s\n' "kafka.Kafka" "$KAFKA_PROPS" ;;
	# by listen address, not by backend: a FerretDB of either backend is this instance's
	ferretdb) printf '%s\n' "/ferretdb serve " "-listen-addr $HOST:$MONGO_PORT " ;;
	postgres) printf '%s\n' "/postgres -D $PG_DATA " ;;
	redis) printf '%s\n' "redis-server" ":$REDIS_PORT" ;;
	esac
}

svc_pidfile() {
	case $1 in
	kafka) echo "$KAFKA_PID" ;;
	ferretdb) echo "$FERRETDB_PID" ;;
	postgres) echo "$PG_PID" ;;
	redis) echo "$REDIS_PID" ;;
	esac
}

svc_ports() {
	case $1 in
	kafka) echo "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" ;;
	ferretdb) echo "$MONGO_PORT" ;;
	postgres) echo "$POSTGRES_PORT" ;;
	redis) echo "$REDIS_PORT" ;;
	esac
}

svc_logs() {
	case $1 in
	kafka) echo "$KAFKA_LOG $KAFKA_OUT" ;;
	ferretdb) echo "$FERRETDB_LOG" ;;
	postgres) echo "$PG_LOG" ;;
	redis) echo "$REDIS_LOG $REDIS_OUT" ;;
	esac
}

svc_address() {
	case $1 in
	kafka) echo "$HOST:$KAFKA_PORT, controller $HOST:$KAFKA_CONTROLLER_PORT" ;;
	ferretdb) echo "mongodb://$HOST:$MONGO_PORT/" ;;
	postgres) echo "postgres://$PG_SUPERUSER@$HOST:$POSTGRES_PORT/$PG_DB (data $PG_DATA)" ;;
	redis) echo "redis://$HOST:$REDIS_PORT" ;;
	esac
}

is_ours() { # svc pid
	local markers=()
	mapfile -t markers < <(svc_marker "$1")
	pid_alive "$2" && pid_cmdline_has "$2" "${markers[@]}"
}

# Pid of this instance's running process for a service, or nothing: from its pid file, else
# (pid file lost) from a process of ours listening on the service's ports.
svc_pid() {
	local pidfile pid=""
	pidfile=$(svc_pidfile "$1")
	[[ -f $pidfile ]] && pid=$(tr -dc '0-9' <"$pidfile" 2>/dev/null || true)
	if [[ -n $pid ]] && is_ours "$1" "$pid"; then
		echo "$pid"
	else
		svc_port_pids "$1" | head -n1
	fi
}

# Our processes of a service found by their listening ports (when a pid file was lost).
svc_port_pids() {
	local port pid
	for port in $(svc_ports "$1"); do
		for pid in $(port_pids "$port"); do
			if is_ours "$1" "$pid"; then echo "$pid"; fi
		done
	done | sort -u
}

show_logs() { # svc
	local f
	for f in $(svc_logs "$1"); do
		if [[ -s $f ]]; then
			printf '[stack] ---- last lines of %s ----\n' "$f" >&2
			tail -n 20 "$f" >&2
			printf '[stack] ----\n' >&2
		fi
	done
}

fail_svc() { # svc message
	local svc=$1
	shift
	printf '[stack] ERROR: %s: %s (read %s)\n' "$svc" "$*" "$(svc_logs "$svc" | sed 's/ / and /')" >&2
	show_logs "$svc"
	exit 1
}

# Run a command as root (directly, or through sudo).
as_root() {
	if ((EUID == 0)); then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root (or sudo) to run: $*"
	fi
}

APT_UPDATED=0
apt_install() { # packages...
	local missing=() p
	for p in "$@"; do
		if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) != "install ok installed" ]]; then
			missing+=("$p")
		fi
	done
	((${#missing[@]})) || return 0
	command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get to install them"
	if ((APT_UPDATED == 0)); then
		say "apt: apt-get update"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		APT_UPDATED=1
	fi
	say "apt: installing ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The machine-level tools the stack needs: Debian packages, installed only when missing.
ensure_prereqs() {
	local pkgs=(redis-server redis-tools kcat pkg-config iproute2)
	command -v "$JAVA" >/dev/null 2>&1 || pkgs+=(openjdk-17-jre-headless)
	command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
	command -v flock >/dev/null 2>&1 || pkgs+=(util-linux)
	if [[ $FERRETDB_BACKEND == postgresql ]] && ! pg_find_bin; then
		[[ -z $POSTGRES_BINDIR ]] ||
			die "postgres: AGORA_STACK_POSTGRES_BINDIR=$POSTGRES_BINDIR has no postgres, initdb and psql"
		pkgs+=(postgresql)
	fi
	apt_install "${pkgs[@]}"
	if [[ $FERRETDB_BACKEND == postgresql ]]; then
		pg_find_bin || die "postgres: no /usr/lib/postgresql/<version>/bin/postgres after installing Debian's postgresql"
	fi
	local jv
	jv=$("$JAVA" -version 2>&1 | sed -nE '1s/.*version "([0-9]+).*/\1/p')
	if [[ -z $jv ]] || ((jv < 17)); then
		die "Kafka $KAFKA_VERSION needs Java 17 or newer ($JAVA -version says: $("$JAVA" -version 2>&1 | head -n1))"
	fi
}

ensure_go() {
	command -v go >/dev/null 2>&1 || die "ferretdb: the Go toolchain (1.24 or newer) is needed to build FerretDB; install Go and retry"
	local v
	v=$(go env GOVERSION 2>/dev/null | sed -nE 's/^go([0-9]+)\.([0-9]+).*/\1 \2/p')
	read -r -a v <<<"${v:-0 0}"
	((v[0] > 1 || (v[0] == 1 && v[1] >= 24))) ||
		die "ferretdb: Go 1.24 or newer is needed to build FerretDB v1.24 (found $(go version))"
}

ensure_dirs() {
	mkdir -p "$KAFKA_DATA" "$FERRETDB_DATA" "$REDIS_DATA" "$LOG_DIR" "$RUN_DIR"
}

# Serialize commands that change this instance (two `up`s at once must not double-start).
# The lock fd (9) is closed in every service we launch, so a service never holds it.
lock_instance() {
	ensure_dirs
	exec 9>"$RUN_DIR/stack.lock"
	flock -w 600 9 || die "another stack.sh holds $RUN_DIR/stack.lock"
}

# ---------------------------------------------------------------------------------------------
# install (into the cache, atomically: build in a temp dir, then rename)

kafka_install_id() {
	printf 'kafka=%s log4j=%s slf4j=%s pom=%s\n' "$KAFKA_VERSION" "$LOG4J_VERSION" "$SLF4J_VERSION" \
		"$(sha256sum "$SCRIPT_DIR/kafka/pom.xml" | cut -c1-16)"
}

kafka_installed() {
	[[ -f $KAFKA_HOME/.complete && $(cat "$KAFKA_HOME/.complete") == "$(kafka_install_id)" ]]
}

KAFKA_CHECKED=0
install_kafka() {
	((KAFKA_CHECKED == 0)) || return 0
	KAFKA_CHECKED=1
	if kafka_installed; then
		say "kafka: using cached jars in $KAFKA_LIBS"
		return 0
	fi
	mkdir -p "$CACHE_DIR"
	exec 8>"$CACHE_DIR/.install.lock"
	flock -w 1200 8 || die "kafka: could not lock $CACHE_DIR/.install.lock"
	if kafka_installed; then # another process installed it while we waited
		exec 8>&-
		say "kafka: using cached jars in $KAFKA_LIBS"
		return 0
	fi
	command -v mvn >/dev/null 2>&1 || die "kafka: mvn (Maven) is needed to fetch the Kafka jars"
	# We hold the install lock: any temp dir left here is from an interrupted install.
	rm -rf -- "$CACHE_DIR/.kafka-$KAFKA_VERSION.tmp."*
	local tmp t0
	tmp=$(mktemp -d "$CACHE_DIR/.kafka-$KAFKA_VERSION.tmp.XXXXXX")
	TMP_PATHS+=("$tmp")
	t0=$(now)
	say "kafka: fetching kafka_2.13 $KAFKA_VERSION + log4j $LOG4J_VERSION jars from Maven Central into $KAFKA_HOME"
	cp "$SCRIPT_DIR/kafka/pom.xml" "$tmp/pom.xml"
	if ! mvn -q -B -f "$tmp/pom.xml" \
		-Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" -Dslf4j.version="$SLF4J_VERSION" \
		dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1; then
		tail -n 30 "$tmp/mvn.log" >&2
		die "kafka: mvn dependency:copy-dependencies failed (output above)"
	fi
	local jar
	for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar" "log4j-core-$LOG4J_VERSION.jar" \
		"log4j-slf4j2-impl-$LOG4J_VERSION.jar" "slf4j-api-$SLF4J_VERSION.jar"; do
		[[ -f $tmp/libs/$jar ]] || die "kafka: $jar missing after mvn (see $tmp/mvn.log)"
	done
	if compgen -G "$tmp/libs/slf4j-api-1.*.jar" >/dev/null || compgen -G "$tmp/libs/slf4j-reload4j*.jar" >/dev/null; then
		die "kafka: conflicting SLF4J jars in $tmp/libs"
	fi
	kafka_install_id >"$tmp/.complete"
	if [[ -e $KAFKA_HOME ]]; then # an older/different install: swap it out
		mv -T "$KAFKA_HOME" "$tmp.old"
		TMP_PATHS+=("$tmp.old")
	fi
	mv -T "$tmp" "$KAFKA_HOME"
	exec 8>&-
	say "kafka: installed $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $(($(now) - t0)) s"
}

ferretdb_version() {
	sed -nE 's#^[[:space:]]*(require[[:space:]]+)?github.com/FerretDB/FerretDB[[:space:]]+(v[^[:space:]]+).*#\2#p' \
		"$FERRETDB_SRC/go.mod" | head -n1
}

ferretdb_home() {
	local hash
	hash=$(cat "$FERRETDB_SRC/main.go" "$FERRETDB_SRC/go.mod" "$FERRETDB_SRC/go.sum" | sha256sum | cut -c1-12)
	echo "$CACHE_DIR/ferretdb-$(ferretdb_version)-$hash"
}

install_ferretdb() {
	local home bin
	[[ -z ${FERRETDB_BIN:-} ]] || return 0
	home=$(ferretdb_home)
	bin=$home/ferretdb
	if [[ -x $bin && -f $home/.complete ]]; then
		say "ferretdb: using cached build $bin"
		FERRETDB_BIN=$bin
		return 0
	fi
	mkdir -p "$CACHE_DIR"
	exec 8>"$CACHE_DIR/.install.lock"
	flock -w 1200 8 || die "ferretdb: could not lock $CACHE_DIR/.install.lock"
	if [[ -x $bin && -f $home/.complete ]]; then
		exec 8>&-
		say "ferretdb: using cached build $bin"
		FERRETDB_BIN=$bin
		return 0
	fi
	ensure_go
	rm -rf -- "$CACHE_DIR/.ferretdb.tmp."* # leftovers of an interrupted build (we hold the lock)
	local tmp t0
	tmp=$(mktemp -d "$CACHE_DIR/.ferretdb.tmp.XXXXXX")
	TMP_PATHS+=("$tmp")
	t0=$(now)
	say "ferretdb: building FerretDB $(ferretdb_version) (embedded, $FERRETDB_SRC) into $home (takes a minute or two)"
	# -buildvcs=false: the module sits in a git checkout that may have no commit yet.
	# -mod=mod: tolerate a go.sum that misses a line instead of failing.
	if ! (cd "$FERRETDB_SRC" && GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
		go build -trimpath -ldflags='-s -w' -o "$tmp/ferretdb" .) >"$tmp/build.log" 2>&1; then
		tail -n 30 "$tmp/build.log" >&2
		die "ferretdb: go build failed (output above)"
	fi
	"$tmp/ferretdb" -h >/dev/null 2>&1 || die "ferretdb: the built binary does not run"
	ferretdb_version >"$tmp/.complete"
	[[ -e $home ]] && rm -rf -- "$home" # an incomplete leftover
	mv -T "$tmp" "$home"
	exec 8>&-
	say "ferretdb: built in $(($(now) - t0)) s"
	FERRETDB_BIN=$bin
}

install_all() {
	ensure_prereqs
	install_kafka
	install_ferretdb
}

# ---------------------------------------------------------------------------------------------
# launching

# Start a command detached (own session, no stdin, lock fd closed); it writes its own pid file
# just before exec, so the pid file always names the real service process.
launch() { # pidfile outfile cmd...
	local pidfile=$1 out=$2
	shift 2
	rm -f "$pidfile"
	# shellcheck disable=SC2016 # expanded by the inner bash
	setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$out" 2>&1 9>&- &
	local i
	for ((i = 0; i < 50; i++)); do
		[[ -s $pidfile ]] && return 0
		sleep 0.1
	done
	return 1
}

# Refuse to start when a port is taken by someone else.
check_ports_free() { # svc
	local port pids
	for port in $(svc_ports "$1"); do
		if port_open "$port"; then
			pids=$(port_pids "$port" | paste -sd, -)
			fail_svc "$1" "port $HOST:$port is already in use by another process${pids:+ (pid $pids)}, not by this stack ($STACK_DIR); stop it or choose other AGORA_STACK_*_PORT values"
		fi
	done
}

kafka_write_props() {
	cat >"$KAFKA_PROPS" <<EOF
# Generated by deploy/local/stack.sh on each start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=12
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
EOF
}

kafka_tool() { # main-class args...
	local cls=$1
	shift
	"$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/tools-log4j2.xml" \
		-cp "$KAFKA_LIBS/*" "$cls" "$@"
}

kafka_format() {
	if [[ -f $KAFKA_DATA/meta.properties ]]; then
		return 0
	fi
	local id
	say "kafka: formatting KRaft storage in $KAFKA_DATA (once per data dir)"
	id=$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$KAFKA_OUT" | tail -n1)
	[[ -n $id ]] || fail_svc kafka "StorageTool random-uuid printed nothing"
	echo "$id" >"$DATA_DIR/kafka-cluster-id"
	kafka_tool kafka.tools.StorageTool format -t "$id" -c "$KAFKA_PROPS" --ignore-formatted >>"$KAFKA_OUT" 2>&1 ||
		fail_svc kafka "StorageTool format failed"
}

start_kafka() {
	local pid
	pid=$(svc_pid kafka)
	if [[ -n $pid ]]; then
		say "kafka: already up (pid $pid, $HOST:$KAFKA_PORT)"
		return 0
	fi
	install_kafka
	check_ports_free kafka
	kafka_write_props
	kafka_format
	say "kafka: starting broker+controller $KAFKA_VERSION on $HOST:$KAFKA_PORT (controller $HOST:$KAFKA_CONTROLLER_PORT), log $KAFKA_LOG"
	local heap=()
	read -r -a heap <<<"$KAFKA_HEAP"
	launch "$KAFKA_PID" "$KAFKA_OUT" "$JAVA" "${heap[@]}" \
		-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
		-XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.xml" -Dagora.kafka.log="$KAFKA_LOG" \
		-Dkafka.logs.dir="$LOG_DIR" \
		-cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" || fail_svc kafka "process did not start"
	STARTED+=(kafka)
}

start_ferretdb() {
	local pid
	pid=$(svc_pid ferretdb)
	if [[ -n $pid ]]; then
		say "ferretdb: already up (pid $pid, mongodb://$HOST:$MONGO_PORT/)"
		if ! pid_cmdline_has "$pid" "-handler $FERRETDB_BACKEND "; then
			warn "ferretdb: the running FerretDB (pid $pid) does not use the $FERRETDB_BACKEND backend; 'stack.sh restart ferretdb' switches it"
		fi
		return 0
	fi
	install_ferretdb
	check_ports_free ferretdb
	local backend=()
	case $FERRETDB_BACKEND in
	postgresql)
		# FerretDB needs its backend: start it if it is down (stop ferretdb leaves it running).
		if [[ -z $(svc_pid postgres) ]]; then
			say "ferretdb: its backend (postgres) is down: starting it first"
			start_postgres
		fi
		backend=(-handler postgresql -postgresql-url "$PG_URL")
		say "ferretdb: starting FerretDB $(ferretdb_version) (PostgreSQL $HOST:$POSTGRES_PORT/$PG_DB) on $HOST:$MONGO_PORT, log $FERRETDB_LOG"
		;;
	sqlite)
		backend=(-handler sqlite -sqlite-dir "$FERRETDB_DATA")
		say "ferretdb: starting FerretDB $(ferretdb_version) (SQLite in $FERRETDB_DATA) on $HOST:$MONGO_PORT, log $FERRETDB_LOG"
		;;
	esac
	launch "$FERRETDB_PID" "$FERRETDB_LOG" "$FERRETDB_BIN" serve -listen-addr "$HOST:$MONGO_PORT" \
		"${backend[@]}" || fail_svc ferretdb "process did not start"
	STARTED+=(ferretdb)
}

start_redis() {
	local pid
	pid=$(svc_pid redis)
	if [[ -n $pid ]]; then
		say "redis: already up (pid $pid, $HOST:$REDIS_PORT)"
		return 0
	fi
	command -v redis-server >/dev/null 2>&1 || apt_install redis-server redis-tools
	check_ports_free redis
	say "redis: starting redis-server on $HOST:$REDIS_PORT (no persistence), log $REDIS_LOG"
	rm -f "$REDIS_PID"
	redis-server --daemonize yes --bind "$HOST" --port "$REDIS_PORT" --save "" --appendonly no \
		--pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --dir "$REDIS_DATA" \
		</dev/null >>"$REDIS_OUT" 2>&1 9>&- || fail_svc redis "redis-server failed to start"
	STARTED+=(redis)
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: FerretDB's backend (AGORA_STACK_FERRETDB_BACKEND=postgresql), a private cluster

# The newest /usr/lib/postgresql/<version>/bin (Debian's layout), or AGORA_STACK_POSTGRES_BINDIR.
pg_find_bin() {
	[[ -z $PG_BIN ]] || return 0
	local d=$POSTGRES_BINDIR
	if [[ -z $d ]]; then
		d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n1)
	fi
	[[ -x $d/postgres && -x $d/initdb && -x $d/psql ]] || return 1
	PG_BIN=$d
}

pg_major() {
	"$PG_BIN/postgres" -V | sed -nE 's/^[^0-9]*([0-9]+).*/\1/p'
}

# PostgreSQL refuses to run as root: then its programs run as AGORA_STACK_POSTGRES_OS_USER
# (Debian's package creates `postgres`), through setpriv (an exec, so pids stay the same).
# Otherwise they run as the calling user. Always from /: the caller's working dir may be one
# that user cannot enter.
PG_RUN_AS=()
pg_setup_user() {
	((EUID == 0)) || return 0
	((${#PG_RUN_AS[@]} == 0)) || return 0
	if ! getent passwd "$POSTGRES_OS_USER" >/dev/null; then
		say "postgres: creating the system user $POSTGRES_OS_USER (PostgreSQL refuses to run as root)"
		useradd --system --user-group --home-dir "/var/lib/$POSTGRES_OS_USER" --create-home \
			--shell /usr/sbin/nologin "$POSTGRES_OS_USER" || die "postgres: useradd $POSTGRES_OS_USER failed"
	fi
	PG_RUN_AS=(setpriv --reuid="$POSTGRES_OS_USER" --regid="$(id -g "$POSTGRES_OS_USER")" --init-groups --reset-env)
}

as_pg() {
	"${PG_RUN_AS[@]+"${PG_RUN_AS[@]}"}" env -C / "$@"
}

pg_psql() { # psql args... (as the cluster's superuser, over TCP, trust auth)
	PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$POSTGRES_PORT" -U "$PG_SUPERUSER" "$@"
}

# Where the cluster lives (sets PG_DATA, PG_SOCK). When root runs the stack, the cluster's OS
# user must be able to enter the data and socket dirs; a stack dir under /root (0700) or made
# with umask 077 is out of its reach. Then the cluster goes to <its home>/agora-stacks/<hash of
# the stack dir>/{data,run}, and data/postgres becomes a symlink to it (found again from that
# link on every later run; remove both to drop the cluster).
pg_place_cluster() {
	if ((EUID != 0)); then
		mkdir -p "$PG_SOCK"
		return 0
	fi
	local owner=$POSTGRES_OS_USER
	if [[ -L $PG_LINK ]]; then
		mkdir -p "$PG_SOCK"
		chown "$owner:" "$PG_SOCK"
		return 0
	fi
	mkdir -p "$PG_SOCK"
	chown "$owner:" "$PG_SOCK"
	if as_pg test -x "$DATA_DIR" && as_pg test -w "$PG_SOCK"; then
		return 0
	fi
	rmdir "$PG_SOCK" 2>/dev/null || true
	if [[ -e $PG_LINK ]]; then
		fail_svc postgres "user $owner cannot enter the cluster in $PG_LINK (a parent dir is not searchable by others): chmod o+x the parents, or move $PG_LINK away to start a new cluster elsewhere"
	fi
	local home base
	home=$(getent passwd "$owner" | cut -d: -f6)
	if [[ -z $home || ! -d $home ]] || ! as_pg test -x "$home"; then
		home=/var/tmp
	fi
	base=$home/agora-stacks/$(printf '%s' "$STACK_DIR" | sha256sum | cut -c1-16)
	mkdir -p "$base/run"
	chmod 755 "$home/agora-stacks" "$base"
	chown "$owner:" "$base/run"
	printf '%s\n' "$STACK_DIR" >"$base/stack-dir"
	ln -sfn "$base/data" "$PG_LINK"
	PG_DATA=$base/data
	PG_SOCK=$base/run
	say "postgres: user $owner cannot enter $STACK_DIR (a parent dir is not searchable by others, e.g. /root is 0700): the cluster lives in $base (symlinked from $PG_LINK)"
}

# initdb once per data dir, into a temp dir renamed into place (an interrupted initdb leaves
# only a .postgres.tmp.* dir, removed by the next run). UTF8 and the C locale: what FerretDB
# checks for; trust auth for local and 127.0.0.1 connections.
pg_init_cluster() {
	local have want
	want=$(pg_major)
	if [[ -f $PG_DATA/PG_VERSION ]]; then
		have=$(<"$PG_DATA/PG_VERSION")
		[[ $have == "$want" ]] ||
			fail_svc postgres "the cluster in $PG_DATA was made by PostgreSQL $have, the binaries in $PG_BIN are PostgreSQL $want: set AGORA_STACK_POSTGRES_BINDIR to PostgreSQL $have's, or remove $PG_DATA (FerretDB's data goes with it)"
		return 0
	fi
	if [[ -e $PG_DATA ]] && [[ -n $(ls -A "$PG_DATA" 2>/dev/null) ]]; then
		fail_svc postgres "$PG_DATA is not empty but holds no PostgreSQL cluster (no PG_VERSION): move it away"
	fi
	local parent tmp t0
	parent=$(dirname "$PG_DATA")
	rm -rf -- "$parent/.postgres.tmp."* # we hold the instance lock: leftovers of an interrupted initdb
	tmp=$(mktemp -d "$parent/.postgres.tmp.XXXXXX")
	TMP_PATHS+=("$tmp")
	((EUID != 0)) || chown "$POSTGRES_OS_USER:" "$tmp"
	t0=$(now)
	say "postgres: creating a PostgreSQL $want cluster in $PG_DATA (initdb, once per data dir)"
	as_pg "$PG_BIN/initdb" -D "$tmp" -U "$PG_SUPERUSER" --auth=trust --encoding=UTF8 --locale=C \
		--no-instructions >>"$PG_LOG" 2>&1 || fail_svc postgres "initdb failed"
	[[ ! -d $PG_DATA ]] || rmdir "$PG_DATA"
	mv -T "$tmp" "$PG_DATA"
	say "postgres: cluster created in $(($(now) - t0)) s"
}

# The database FerretDB uses and the companion-index triggers (postgres/ferretdb-gin.sql).
pg_setup_db() {
	local have n
	have=$(pg_psql -d postgres -At -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" 2>>"$PG_LOG") ||
		pg_setup_failed "could not query the cluster"
	if [[ $have != 1 ]]; then
		say "postgres: creating database $PG_DB"
		pg_psql -d postgres -c "CREATE DATABASE $PG_DB" >>"$PG_LOG" 2>&1 ||
			pg_setup_failed "CREATE DATABASE $PG_DB failed"
	fi
	n=$(pg_psql -d "$PG_DB" -At -f "$PG_SQL" 2>>"$PG_LOG") ||
		pg_setup_failed "installing $PG_SQL into $PG_DB failed"
	[[ $n == 0 ]] && n=""
	say "postgres: database $PG_DB ready (GIN companion-index triggers installed${n:+, $n missing companion indexes made})"
}

pg_setup_failed() {
	warn "postgres: $1; stopping it"
	stop_svc postgres >&2
	fail_svc postgres "$1"
}

# Settings for a dev stack: synchronous_commit=off (a crash may lose the last few hundred ms of
# commits, never corrupts: fsync stays on), modest shared_buffers, max_connections for FerretDB's
# pool (up to 200) plus psql and tests, custom plans for FerretDB's prepared statements (see
# postgres/ferretdb-gin.sql), no JIT (compiling costs more than it saves on these queries).
# Errors are logged without their statement: Agora's claims insert and expect duplicate-key
# errors all the time, and the statement text (the whole document) would swell the log.
start_postgres() {
	local pid
	pid=$(svc_pid postgres)
	if [[ -n $pid ]]; then
		say "postgres: already up (pid $pid, $HOST:$POSTGRES_PORT)"
		return 0
	fi
	pg_find_bin || die "postgres: PostgreSQL is not installed (stack.sh install installs Debian's postgresql)"
	pg_setup_user
	check_ports_free postgres
	pg_place_cluster
	pg_init_cluster
	local sock=$PG_SOCK
	if ((${#sock} + 16 > 107)); then # a Unix socket path holds at most 107 bytes
		warn "postgres: socket dir $sock is too long for a Unix socket path: TCP only"
		sock=""
	fi
	say "postgres: starting PostgreSQL $(pg_major) on $HOST:$POSTGRES_PORT (data $PG_DATA), log $PG_LOG"
	launch "$PG_PID" "$PG_LOG" "${PG_RUN_AS[@]+"${PG_RUN_AS[@]}"}" env -C / "$PG_BIN/postgres" -D "$PG_DATA" \
		-c listen_addresses="$HOST" -c port="$POSTGRES_PORT" -c unix_socket_directories="$sock" \
		-c max_connections=300 -c shared_buffers=128MB -c synchronous_commit=off -c fsync=on \
		-c plan_cache_mode=force_custom_plan -c jit=off -c log_timezone=UTC -c log_min_error_statement=panic \
		|| fail_svc postgres "process did not start"
	wait_svc postgres
	pg_setup_db
}

# ---------------------------------------------------------------------------------------------
# readiness

kafka_answers() {
	# A real metadata round trip; the broker must list itself.
	timeout 10 kcat -L -b "$HOST:$KAFKA_PORT" -m 3 -t __agora_probe 2>/dev/null | grep -q "broker 1 at $HOST:$KAFKA_PORT"
}

ferretdb_answers() {
	local bin=${FERRETDB_BIN:-} pid
	if [[ -z $bin ]]; then # the binary of the running server, else the current build
		pid=$(svc_pid ferretdb)
		[[ -n $pid ]] && bin=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
		[[ -x $bin ]] || bin=$(ferretdb_home)/ferretdb
	fi
	[[ -x $bin ]] || return 1
	"$bin" ping -uri "mongodb://$HOST:$MONGO_PORT/" -timeout 2s >/dev/null 2>&1
}

postgres_answers() {
	pg_find_bin || return 1
	[[ $(PGCONNECT_TIMEOUT=2 timeout 5 "$PG_BIN/psql" -X -At -h "$HOST" -p "$POSTGRES_PORT" -U "$PG_SUPERUSER" \
		-d postgres -c 'SELECT 1' 2>/dev/null) == 1 ]]
}

redis_answers() {
	[[ $(timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

wait_svc() { # svc
	local svc=$1 t0 pid
	t0=$(now)
	say "$svc: waiting until it answers (up to $WAIT_SECS s)"
	while :; do
		pid=$(svc_pid "$svc")
		if [[ -z $pid ]]; then
			# redis writes its pid file shortly after daemonizing
			if [[ $svc != redis || $(($(now) - t0)) -ge 5 ]]; then
				fail_svc "$svc" "process exited during startup"
			fi
		elif "${svc}_answers"; then
			say "$svc: up (pid $pid, $(svc_address "$svc")) after $(($(now) - t0)) s"
			return 0
		fi
		if (($(now) - t0 >= WAIT_SECS)); then
			warn "$svc: did not answer within $WAIT_SECS s; stopping it"
			stop_svc "$svc" >&2
			fail_svc "$svc" "did not answer within $WAIT_SECS s"
		fi
		sleep 0.5
	done
}

# ---------------------------------------------------------------------------------------------
# stopping

# PostgreSQL's postmaster: SIGTERM would be a "smart" shutdown, waiting for every client to
# disconnect; SIGINT is the "fast" one (clients are disconnected, a clean checkpoint is written).
# If it hangs, SIGQUIT ("immediate", crash recovery at the next start) before SIGKILL.
stop_signal() {
	case $1 in
	postgres) echo INT ;;
	*) echo TERM ;;
	esac
}

# Child processes of pids (PostgreSQL's backends and workers), to make sure none outlives them.
child_pids() {
	local pid
	for pid in "$@"; do
		ps -o pid= --ppid "$pid" 2>/dev/null | tr -d ' ' || true
	done
}

stop_svc() { # svc
	local svc=$1 pids=() children=() pid t0 port i sig quit_sent=0
	pid=$(svc_pid "$svc")
	[[ -n $pid ]] && pids+=("$pid")
	for pid in $(svc_port_pids "$svc"); do
		[[ " ${pids[*]-} " == *" $pid "* ]] || pids+=("$pid")
	done
	if ((${#pids[@]} == 0)); then
		say "$svc: already down"
	else
		sig=$(stop_signal "$svc")
		[[ $svc != postgres ]] || mapfile -t children < <(child_pids "${pids[@]}")
		say "$svc: stopping pid ${pids[*]} (SIG$sig, SIGKILL after $STOP_SECS s)"
		kill -"$sig" "${pids[@]}" 2>/dev/null || true
		t0=$(now)
		for pid in "${pids[@]}"; do
			while pid_alive "$pid"; do
				if (($(now) - t0 >= STOP_SECS)); then
					if [[ $svc == postgres ]] && ((quit_sent == 0)); then
						warn "$svc: pid $pid still running after $STOP_SECS s: SIGQUIT (immediate shutdown)"
						kill -QUIT "$pid" 2>/dev/null || true
						quit_sent=1
						t0=$(($(now) - STOP_SECS + 5)) # 5 s more, then SIGKILL
						continue
					fi
					warn "$svc: pid $pid still running after $STOP_SECS s: SIGKILL"
					kill -KILL "$pid" 2>/dev/null || true
					sleep 0.2
					break
				fi
				sleep 0.2
			done
		done
		for pid in "${pids[@]}"; do
			for ((i = 0; i < 50; i++)); do
				pid_alive "$pid" || break
				sleep 0.1
			done
			if pid_alive "$pid"; then die "$svc: pid $pid survived SIGKILL"; fi
		done
		# A postmaster that exited normally has waited for its children; after a SIGKILL they
		# exit on their own once they notice. Give them 5 s, then SIGKILL what is left.
		for pid in "${children[@]+"${children[@]}"}"; do
			for ((i = 0; i < 50; i++)); do
				pid_alive "$pid" || break
				sleep 0.1
			done
			if pid_alive "$pid" && pid_cmdline_has "$pid" "postgres"; then
				warn "$svc: child pid $pid of the stopped postmaster still running: SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
			fi
		done
		say "$svc: stopped"
	fi
	rm -f "$(svc_pidfile "$svc")"
	for port in $(svc_ports "$svc"); do
		for ((i = 0; i < 50; i++)); do
			port_open "$port" || break
			sleep 0.1
		done
		if port_open "$port"; then
			warn "$svc: port $HOST:$port is still in use, by a process that is not this stack's: pid $(port_pids "$port" | paste -sd, -)"
		fi
	done
}

# ---------------------------------------------------------------------------------------------
# topics

create_topics() { # [prefix]
	local prefix=${1:-$TOPIC_PREFIX}
	[[ $prefix =~ ^[A-Za-z0-9._-]+$ ]] || die "topics: bad prefix '$prefix' (letters, digits, . _ - only)"
	if ! [[ $TOPIC_PARTITIONS =~ ^[0-9]+$ ]] || ((TOPIC_PARTITIONS < 1)); then
		die "topics: AGORA_TOPIC_PARTITIONS must be a positive number"
	fi
	[[ -f $SCRIPT_DIR/topics.txt ]] || die "topics: $SCRIPT_DIR/topics.txt is missing"
	[[ -n $(svc_pid kafka) ]] || die "topics: kafka is not running (stack.sh start kafka)"
	kafka_installed || die "topics: Kafka jars are not installed (stack.sh install)"

	local existing name topic line parts n t0 missing=() bg_pids=() i rc=0
	t0=$(now)
	# What exists (and how many partitions), from one metadata request.
	existing=$(timeout 15 kcat -L -b "$HOST:$KAFKA_PORT" -m 5 2>/dev/null |
		sed -nE 's/^ *topic "([^"]+)" with ([0-9]+) partitions:.*/\1 \2/p') || existing=""
	while IFS= read -r line || [[ -n $line ]]; do
		name=${line%%#*}
		name=${name//[[:space:]]/}
		[[ -n $name ]] || continue
		topic=$prefix.$name
		parts=$(awk -v t="$topic" '$1 == t { print $2 }' <<<"$existing")
		if [[ -z $parts ]]; then
			missing+=("$topic")
		elif [[ $parts != "$TOPIC_PARTITIONS" ]]; then
			warn "kafka: topic $topic exists with $parts partitions (wanted $TOPIC_PARTITIONS); left as is"
		else
			say "kafka: topic $topic exists ($parts partitions)"
		fi
	done <"$SCRIPT_DIR/topics.txt"
	# Each TopicCommand is a JVM start (~1.5 s): run up to 4 at once.
	for ((i = 0; i < ${#missing[@]}; i++)); do
		topic=${missing[i]}
		say "kafka: creating topic $topic ($TOPIC_PARTITIONS partitions, retention.ms=-1)"
		kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" \
			--create --if-not-exists --topic "$topic" --partitions "$TOPIC_PARTITIONS" \
			--replication-factor 1 --config retention.ms=-1 >/dev/null 2>"$RUN_DIR/topic-$topic.err" &
		bg_pids+=($!)
		if ((${#bg_pids[@]} == 4 || i == ${#missing[@]} - 1)); then
			for n in "${bg_pids[@]}"; do wait "$n" || rc=1; done
			bg_pids=()
		fi
	done
	for topic in "${missing[@]+"${missing[@]}"}"; do
		if [[ -s $RUN_DIR/topic-$topic.err ]]; then cat "$RUN_DIR/topic-$topic.err" >&2; fi
		rm -f "$RUN_DIR/topic-$topic.err"
	done
	((rc == 0)) || die "kafka: creating topics failed (errors above; broker log: $KAFKA_LOG)"
	# Return only once clients can see every topic in the broker's metadata.
	local want=() listed
	mapfile -t want < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' -e "s/^/$prefix./" "$SCRIPT_DIR/topics.txt")
	for ((i = 0; i < 60; i++)); do
		listed=$(timeout 15 kcat -L -b "$HOST:$KAFKA_PORT" -m 5 2>/dev/null |
			sed -nE 's/^ *topic "([^"]+)" with [1-9][0-9]* partitions:.*/\1/p') || listed=""
		n=0
		for topic in "${want[@]}"; do
			if grep -qxF -- "$topic" <<<"$listed"; then n=$((n + 1)); fi
		done
		((n == ${#want[@]})) && break
		sleep 0.25
	done
	((n == ${#want[@]})) || die "kafka: only $n of ${#want[@]} topics '$prefix.*' are visible in the metadata (broker log: $KAFKA_LOG)"
	say "kafka: $n/${#want[@]} topics '$prefix.*' ready ($(($(now) - t0)) s)"
}

# ---------------------------------------------------------------------------------------------
# commands

STARTED=()

cmd_up() {
	local t0
	t0=$(now)
	lock_instance
	install_all
	start_kafka # answers after a few seconds: waited for below, with the others
	if [[ $FERRETDB_BACKEND == postgresql ]]; then
		start_postgres # waits until it answers and has FerretDB's database
	fi
	start_ferretdb
	start_redis
	local svc
	for svc in "${STARTED[@]+"${STARTED[@]}"}"; do
		wait_svc "$svc"
	done
	create_topics "$TOPIC_PREFIX"
	say "all up in $(($(now) - t0)) s (stack dir $STACK_DIR)"
}

cmd_down() {
	lock_instance
	local svc
	# Reverse order: FerretDB before its backend; postgres is stopped whatever the backend (a
	# cluster left running by an earlier AGORA_STACK_FERRETDB_BACKEND=postgresql).
	for svc in redis ferretdb postgres kafka; do
		stop_svc "$svc"
	done
	say "all down"
}

status_line() { # svc -> 0 if up
	local svc=$1 pid state
	pid=$(svc_pid "$svc")
	if [[ -z $pid ]]; then
		printf '%-9s down  pid -        %s\n' "$svc" "$(svc_address "$svc")"
		return 1
	fi
	if "${svc}_answers"; then
		state=up
	else
		state="not-answering"
	fi
	local extra=""
	if [[ $svc == ferretdb ]]; then # which backend the running process uses
		extra=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | sed -nE 's/.* -handler ([a-z]+) .*/ over \1/p')
	fi
	printf '%-9s %-5s pid %-8s %s%s\n' "$svc" "$state" "$pid" "$(svc_address "$svc")" "$extra"
	[[ $state == up ]]
}

cmd_status() {
	local svc rc=0
	for svc in "${SERVICES[@]}"; do
		status_line "$svc" || rc=3
	done
	if [[ $FERRETDB_BACKEND != postgresql && -n $(svc_pid postgres) ]]; then
		status_line postgres || true # not used by this backend, but running: show it
	fi
	return "$rc"
}

check_svc_name() {
	case ${1:-} in
	kafka | postgres | ferretdb | redis) ;;
	*) die "expected one of: kafka postgres ferretdb redis (got '${1:-}')" ;;
	esac
}

cmd_start() {
	check_svc_name "${1:-}"
	if [[ $1 == postgres && $FERRETDB_BACKEND != postgresql ]]; then
		die "postgres: not used with AGORA_STACK_FERRETDB_BACKEND=$FERRETDB_BACKEND (FerretDB runs over SQLite)"
	fi
	lock_instance
	ensure_prereqs
	"start_$1"
	local svc
	for svc in "${STARTED[@]+"${STARTED[@]}"}"; do
		wait_svc "$svc"
	done
}

cmd_stop() {
	check_svc_name "${1:-}"
	lock_instance
	stop_svc "$1"
}

cmd_env() {
	printf 'AGORA_STACK_DIR=%q\n' "$STACK_DIR"
	printf 'AGORA_KAFKA_BROKERS=%s\n' "$HOST:$KAFKA_PORT"
	printf 'AGORA_MONGO_URI=%s\n' "mongodb://$HOST:$MONGO_PORT/"
	printf 'AGORA_STACK_FERRETDB_BACKEND=%s\n' "$FERRETDB_BACKEND"
	if [[ $FERRETDB_BACKEND == postgresql ]]; then
		printf 'AGORA_STACK_POSTGRES_URL=%q\n' "postgres://$PG_SUPERUSER@$HOST:$POSTGRES_PORT/$PG_DB"
	fi
	printf 'AGORA_REDIS_URL=%s\n' "redis://$HOST:$REDIS_PORT/"
	printf 'AGORA_TOPIC_PREFIX=%s\n' "$TOPIC_PREFIX"
}

usage() {
	sed -n '6,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

main() {
	check_port_number AGORA_STACK_KAFKA_PORT "$KAFKA_PORT"
	check_port_number AGORA_STACK_KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
	check_port_number AGORA_STACK_MONGO_PORT "$MONGO_PORT"
	check_port_number AGORA_STACK_REDIS_PORT "$REDIS_PORT"
	check_port_number AGORA_STACK_POSTGRES_PORT "$POSTGRES_PORT"
	case $FERRETDB_BACKEND in
	postgresql | sqlite) ;;
	*) die "AGORA_STACK_FERRETDB_BACKEND must be postgresql or sqlite, got '$FERRETDB_BACKEND'" ;;
	esac
	local cmd=${1:-}
	shift || true
	case $cmd in
	up) cmd_up ;;
	down) cmd_down ;;
	status) cmd_status ;;
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	restart)
		cmd_stop "$@"
		cmd_start "$@"
		;;
	topics)
		lock_instance
		create_topics "${1:-$TOPIC_PREFIX}"
		;;
	install)
		install_all
		;;
	env) cmd_env ;;
	-h | --help | help) usage ;;
	*)
		usage
		exit 2
		;;
	esac
}

main "$@"
