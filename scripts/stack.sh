#!/usr/bin/env bash
# Local stack for development and tests (no Docker here): a real Apache Kafka 4.x broker in
# KRaft mode (one JVM, broker+controller) and a Redis server, both on loopback, with their
# state, logs and pids in .cache/stack/.
#
#   scripts/stack.sh start|stop|status|restart [--secure | --brokers 3 | --cluster]
#
# Ports come from KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093) and REDIS_PORT (16379),
# away from the defaults so that a system Kafka/Redis does not collide with ours.
#
# --secure: a second stack beside the plaintext one, in .cache/stack-secure on ports 19094
# (Kafka), 19095 (its controller) and 16380 (Redis): Kafka speaks only SASL/SCRAM-SHA-512 over
# TLS (config/kafka/secure.properties), Redis only TLS with ACL users (config/redis/
# acl.template; the service user may touch the keys of the namespaces in STACK_NAMESPACES,
# default "seg"). A throwaway CA and certificate (scripts/tls.sh) and random passwords are made
# at the first start; the SCRAM users when the storage is formatted. start writes
# .cache/stack-secure/segstream.env, the SEGSTREAM_* settings to `source` (mode 600).
#
# --brokers 3: a three-node cluster beside the others, in .cache/stack-brokers: each node a
# broker and a controller (a quorum of 3 voters), clients on ports 39092-39094 (KAFKA_PORT is
# the first), controllers on 39192-39194 (KAFKA_CONTROLLER_PORT the first), Redis on 16381
# (not 29092: docker-compose.yml's broker publishes that port, and other stacks use it here);
# config/kafka/brokers.properties on top of server.properties (replication 3, min ISR 2, the
# internal topics too). The service's topics are created with replication factor 3 and
# min.insync.replicas 2; start writes .cache/stack-brokers/segstream.env, the SEGSTREAM_*
# settings to `source` (the three brokers, topics.replication_factor/min_insync_replicas).
# Every command takes the same flag: `scripts/stack.sh stop --brokers 3` stops that cluster only.
#
# start is idempotent (a running stack is left alone and it exits 0), waits until both answer
# and then creates the service's topics. stop leaves no process behind. status exits 0 only if
# both services are up. Prerequisites come from scripts/bootstrap.sh.
#
# --cluster: a Redis Cluster only (no Kafka: the plaintext broker of `scripts/stack.sh start` on
# 19092 serves it), in .cache/stack-cluster: three masters with one replica each, Debian's
# redis-server on loopback ports CLUSTER_PORT..CLUSTER_PORT+5 (17001-17006; cluster bus on each
# port + 10000), made once by `redis-cli --cluster create --cluster-replicas 1`; a master silent
# for CLUSTER_NODE_TIMEOUT ms (2000) is failed over to its replica. Each node keeps an AOF and
# its nodes.conf, so a stop and a start bring the same cluster back. start writes
# .cache/stack-cluster/segstream.env (SEGSTREAM_REDIS__URL and SEGSTREAM_REDIS__CLUSTER=true);
# stop and status with --cluster touch only the cluster's nodes, never the plaintext stack.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECURE=0
BROKERS=1
CLUSTER=0
CMD=""
usage() {
    echo "usage: scripts/stack.sh start|stop|status|restart [--secure | --brokers 3 | --cluster]" >&2
    exit 2
}
ARGS=("$@")
for ((i = 0; i < ${#ARGS[@]}; i++)); do
    case "${ARGS[$i]}" in
        --secure) SECURE=1 ;;
        --cluster) CLUSTER=1 ;;
        --brokers=*) BROKERS="${ARGS[$i]#--brokers=}" ;;
        --brokers)
            ((i + 1 < ${#ARGS[@]})) || usage
            i=$((i + 1))
            BROKERS="${ARGS[$i]}"
            ;;
        -*) usage ;;
        *) CMD="${ARGS[$i]}" ;;
    esac
done
# Three: the smallest quorum that survives a node, and what the replication factor 3 needs.
[[ "$BROKERS" == 1 || "$BROKERS" == 3 ]] || {
    echo "stack: error: --brokers takes 3 (a three-node cluster); got '$BROKERS'" >&2
    exit 2
}
if ((SECURE + CLUSTER + (BROKERS > 1) > 1)); then
    echo "stack: error: --secure, --brokers and --cluster are separate stacks: pass one" >&2
    exit 2
fi
if ((BROKERS > 1)); then
    KAFKA_PORT="${KAFKA_PORT:-39092}"
    KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-39192}"
    REDIS_PORT="${REDIS_PORT:-16381}"
    STACK="${STACK_DIR:-$ROOT/.cache/stack-brokers}"
elif ((CLUSTER)); then
    # Kafka is the plaintext stack's; its ports are set only for the shared definitions below.
    KAFKA_PORT="${KAFKA_PORT:-19092}"
    KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
    REDIS_PORT="${REDIS_PORT:-16379}"
    CLUSTER_PORT="${CLUSTER_PORT:-17001}"
    CLUSTER_NODE_TIMEOUT="${CLUSTER_NODE_TIMEOUT:-2000}"
    STACK="${STACK_DIR:-$ROOT/.cache/stack-cluster}"
elif ((SECURE)); then
    KAFKA_PORT="${KAFKA_PORT:-19094}"
    KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19095}"
    REDIS_PORT="${REDIS_PORT:-16380}"
    STACK="${STACK_DIR:-$ROOT/.cache/stack-secure}"
else
    KAFKA_PORT="${KAFKA_PORT:-19092}"
    KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
    REDIS_PORT="${REDIS_PORT:-16379}"
    STACK="${STACK_DIR:-$ROOT/.cache/stack}"
fi
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STACK_NAMESPACES="${STACK_NAMESPACES:-seg}"

TLS="$STACK/tls"             # --secure: CA, certificate, keystore (scripts/tls.sh)
SECRETS="$STACK/secrets"     # --secure: one password per file, mode 600
ENV_FILE="$STACK/segstream.env"
KLIBS="$ROOT/.cache/kafka/libs"
RDIR="$STACK/redis"           # redis data (AOF) and generated config
RPID="$STACK/redis.pid"
VENV_PY="$ROOT/.venv/bin/python"
# Marker on the java command line so that stop can find a broker whose pidfile was lost.
KMARK="-Dsegstream.stack=$STACK"
# Where the marker lives that the topics were created for these broker processes.
TOPICS_OK_DIR="$STACK/kafka"
((BROKERS > 1)) && TOPICS_OK_DIR="$STACK"

# The node the kafka functions below act on (1..BROKERS): its directories, pidfile, ports and
# the marker of its command line. One node: the paths of the stack before clusters existed.
use_node() {
    NODE="$1"
    KAFKA_NODE_PORT=$((KAFKA_PORT + NODE - 1))
    KAFKA_NODE_CONTROLLER_PORT=$((KAFKA_CONTROLLER_PORT + NODE - 1))
    if ((BROKERS > 1)); then
        KDIR="$STACK/kafka-$NODE"       # generated config, logs, pid
        KDATA="$STACK/kafka-$NODE-data" # log.dirs (also the KRaft metadata log, meta.properties)
        KNODEMARK="$KMARK -Dsegstream.node=$NODE"
    else
        KDIR="$STACK/kafka"
        KDATA="$STACK/kafka-data"
        KNODEMARK="$KMARK"
    fi
    KPID="$KDIR/kafka.pid"
}
use_node 1

# The clients' bootstrap list: every node's port.
bootstrap_servers() {
    local n out=""
    for ((n = 1; n <= BROKERS; n++)); do out+="${out:+,}localhost:$((KAFKA_PORT + n - 1))"; done
    echo "$out"
}

die() {
    echo "stack: error: $*" >&2
    exit 1
}
warn() { echo "stack: warning: $*" >&2; }

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
read_pid() { cat "$1" 2>/dev/null || true; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

kafka_pid() {
    local p
    p="$(read_pid "$KPID")"
    if pid_alive "$p"; then echo "$p"; fi
}
redis_pid() {
    local p
    p="$(read_pid "$RPID")"
    if pid_alive "$p"; then echo "$p"; fi
}
# Fallbacks for stop: processes of *this* checkout's stack, found by their command lines (the
# trailing space: not a longer path, nor another node's number).
kafka_strays() { pgrep -f -- "$KNODEMARK " || true; }
redis_strays() { pgrep -f -- "redis-server .*$RDIR/redis.conf" || true; }

# --secure: a password of the stack's, made at the first start (hex: safe in URLs and configs).
secret() {
    local f="$SECRETS/$1.password"
    if [[ ! -s "$f" ]]; then
        (umask 077 && mkdir -p "$SECRETS" && openssl rand -hex 16 | tr -d '\n' >"$f")
    fi
    cat "$f"
}

redis_ping() {
    if ((SECURE)); then
        # The admin's password from the environment: not on a command line others can read.
        [[ "$(REDISCLI_AUTH="$(secret redis-admin)" redis-cli --tls --cacert "$TLS/ca.pem" \
            -h localhost -p "$REDIS_PORT" --user admin ping 2>/dev/null)" == "PONG" ]]
    else
        [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]
    fi
}

# A metadata round trip with the client the service uses: the port opens before the broker is
# ready to serve, so an open port alone is not enough. --secure: as the service's user, the
# password read from its file (never on a command line).
# A cluster's node is ready once all the cluster's brokers are registered and unfenced: the
# topics' replication factor needs every one of them.
kafka_ready() {
    "$VENV_PY" - "127.0.0.1:$KAFKA_NODE_PORT" "$SECURE" "$SECRETS" "$TLS" "$BROKERS" >/dev/null 2>&1 <<'PY'
import sys
from pathlib import Path

from kafka import KafkaAdminClient

bootstrap, secure, secrets, tls = sys.argv[1], sys.argv[2] == "1", Path(sys.argv[3]), Path(sys.argv[4])
brokers = int(sys.argv[5])
security = {}
if secure:
    security = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "segstream",
        "sasl_plain_password": (secrets / "kafka-segstream.password").read_text(),
        "ssl_cafile": str(tls / "ca.pem"),
    }
admin = KafkaAdminClient(
    bootstrap_servers=bootstrap, client_id="stack-check", request_timeout_ms=5000, **security
)
try:
    admin.list_topics()
    if brokers > 1:
        live = [b for b in admin.describe_cluster()["brokers"] if not b.get("is_fenced")]
        assert len(live) >= brokers, f"{len(live)} of {brokers} brokers registered"
finally:
    admin.close()
PY
}

# --brokers: the settings of the cluster, for `source` (or `set -a; . FILE`).
write_brokers_env_file() {
    cat >"$ENV_FILE" <<EOF
export SEGSTREAM_KAFKA__BOOTSTRAP_SERVERS=$(bootstrap_servers)
export SEGSTREAM_TOPICS__REPLICATION_FACTOR=3
export SEGSTREAM_TOPICS__MIN_INSYNC_REPLICAS=2
export SEGSTREAM_REDIS__URL=redis://localhost:$REDIS_PORT/0
EOF
}

# --secure: the settings the service and the CLI need, for `source` (or `set -a; . FILE`).
write_env_file() {
    (
        umask 077
        cat >"$ENV_FILE" <<EOF
export SEGSTREAM_KAFKA__BOOTSTRAP_SERVERS=localhost:$KAFKA_PORT
export SEGSTREAM_KAFKA__SECURITY_PROTOCOL=SASL_SSL
export SEGSTREAM_KAFKA__SASL_MECHANISM=SCRAM-SHA-512
export SEGSTREAM_KAFKA__SASL_USERNAME=segstream
export SEGSTREAM_KAFKA__SASL_PASSWORD=$(secret kafka-segstream)
export SEGSTREAM_KAFKA__SSL_CAFILE=$TLS/ca.pem
export SEGSTREAM_REDIS__URL='rediss://segstream:$(secret redis-segstream)@localhost:$REDIS_PORT/0?ssl_ca_certs=$TLS/ca.pem'
EOF
    )
}

last_error_line() {
    local f
    for f in "$KDIR/server.log" "$KDIR/kafka.out"; do
        if [[ -s "$f" ]] && grep -qE 'ERROR|Exception|Error:' "$f"; then
            grep -E 'ERROR|Exception|Error:' "$f" | tail -n 1 | cut -c1-400
            return
        fi
    done
    tail -n 1 "$KDIR/kafka.out" 2>/dev/null | cut -c1-400
}

# --- redis ---------------------------------------------------------------------------------
start_redis() {
    if [[ -n "$(redis_pid)" ]] && redis_ping; then return 0; fi
    command -v redis-server >/dev/null || die "redis-server not installed: run scripts/bootstrap.sh"
    if [[ -z "$(redis_pid)" ]] && [[ -n "$(redis_strays)" ]]; then
        die "a redis for $STACK runs without a pidfile: run scripts/stack.sh stop first"
    fi
    if [[ -z "$(redis_pid)" ]] && port_open "$REDIS_PORT"; then
        die "redis port $REDIS_PORT is already in use by another process (set REDIS_PORT)"
    fi
    mkdir -p "$RDIR"
    local listen="port $REDIS_PORT"
    if ((SECURE)); then
        # TLS only, and the users of config/redis/acl.template (passwords as SHA-256 hashes).
        listen="port 0
tls-port $REDIS_PORT
tls-cert-file $TLS/server.pem
tls-key-file $TLS/server.key
tls-ca-cert-file $TLS/ca.pem
tls-auth-clients no
aclfile $RDIR/users.acl"
        local keys="" ns admin_sha service_sha
        for ns in $STACK_NAMESPACES; do keys+="~$ns:* "; done
        admin_sha="$(printf '%s' "$(secret redis-admin)" | sha256sum | cut -d' ' -f1)"
        service_sha="$(printf '%s' "$(secret redis-segstream)" | sha256sum | cut -d' ' -f1)"
        grep -v -e '^#' -e '^\s*$' "$ROOT/config/redis/acl.template" |
            sed -e "s#@ADMIN_SHA256@#$admin_sha#" -e "s#@SERVICE_SHA256@#$service_sha#" \
                -e "s#@KEYS@#$keys#" >"$RDIR/users.acl"
    fi
    # Generated each start so that a changed REDIS_PORT is honoured. The process title carries
    # the config path, which is how stop finds a server whose pidfile was lost.
    cat >"$RDIR/redis.conf" <<EOF
$listen
bind 127.0.0.1
protected-mode yes
daemonize yes
pidfile $RPID
logfile $STACK/redis.log
dir $RDIR
# The feature store relies on Redis persistence for effectively-once state across restarts.
appendonly yes
appendfsync everysec
# AOF is the persistence; no RDB snapshots competing for the two cores.
save ""
# The feature store keeps customers in hash buckets and due times in small sorted sets; these
# limits keep them in the compact listpack encoding (stream/feature_store.py LISTPACK_CONFIG).
hash-max-listpack-value 512
hash-max-listpack-entries 1024
zset-max-listpack-entries 1024
proc-title-template "{title} {listen-addr} {server-mode} {config-file}"
EOF
    # 9>&-: the daemon must not inherit the lock fd (it would hold the lock forever).
    redis-server "$RDIR/redis.conf" </dev/null >/dev/null 2>&1 9>&- ||
        die "redis-server failed to start: $(tail -n 1 "$STACK/redis.log" 2>/dev/null)"
    local i
    for ((i = 0; i < 100; i++)); do
        if redis_ping; then return 0; fi
        sleep 0.1
    done
    die "redis did not answer on port $REDIS_PORT within 10 s: $(tail -n 1 "$STACK/redis.log" 2>/dev/null)"
}

stop_redis() {
    local pids p i
    pids="$(redis_pid) $(redis_strays)"
    pids="$(echo "$pids" | tr ' ' '\n' | sort -u | grep -v '^$' || true)"
    [[ -n "$pids" ]] || { rm -f "$RPID"; return 0; }
    # SIGTERM: redis flushes the AOF and exits.
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for ((i = 0; i < 150; i++)); do
        local alive=0
        for p in $pids; do pid_alive "$p" && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in $pids; do pid_alive "$p" && kill -KILL "$p" 2>/dev/null || true; done
    rm -f "$RPID"
}

# --- redis cluster (--cluster) -------------------------------------------------------------
cluster_ports() { seq "$CLUSTER_PORT" $((CLUSTER_PORT + 5)); }
node_dir() { echo "$STACK/redis-$1"; }
node_pid() {
    local p
    p="$(read_pid "$(node_dir "$1")/redis.pid")"
    if pid_alive "$p"; then echo "$p"; fi
}
# Nodes of *this* cluster whose pidfile was lost, found by the config path in their title.
cluster_strays() { pgrep -f -- "redis-server .*$STACK/redis-[0-9]+/redis.conf" || true; }
node_cli() {
    local port="$1"
    shift
    redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null || true
}
# One field of a node's CLUSTER INFO (empty when the node does not answer).
node_info() { node_cli "$1" cluster info | tr -d '\r' | sed -n "s/^$2://p"; }

start_node() {
    local port="$1" dir
    dir="$(node_dir "$port")"
    if [[ -n "$(node_pid "$port")" ]]; then return 0; fi
    port_open "$port" && die "redis cluster port $port is already in use by another process (set CLUSTER_PORT)"
    port_open $((port + 10000)) &&
        die "cluster bus port $((port + 10000)) is already in use by another process (set CLUSTER_PORT)"
    mkdir -p "$dir"
    # Generated each start (a changed CLUSTER_NODE_TIMEOUT is honoured). nodes.conf, the node's
    # identity and its view of the cluster, is Redis's own and kept across restarts.
    cat >"$dir/redis.conf" <<CONF
port $port
bind 127.0.0.1
protected-mode yes
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
cluster-enabled yes
cluster-config-file $dir/nodes.conf
cluster-node-timeout $CLUSTER_NODE_TIMEOUT
appendonly yes
appendfsync everysec
save ""
# Every node, replicas too: a replica promoted by a failover keeps the buckets' listpacks.
hash-max-listpack-value 512
hash-max-listpack-entries 1024
zset-max-listpack-entries 1024
proc-title-template "{title} {listen-addr} {server-mode} {config-file}"
CONF
    redis-server "$dir/redis.conf" </dev/null >/dev/null 2>&1 9>&- ||
        die "redis-server on port $port failed to start: $(tail -n 1 "$dir/redis.log" 2>/dev/null)"
}

start_cluster() {
    command -v redis-server >/dev/null || die "redis-server not installed: run scripts/bootstrap.sh"
    command -v redis-cli >/dev/null || die "redis-cli not installed: run scripts/bootstrap.sh"
    local port running=0 i
    for port in $(cluster_ports); do
        [[ -n "$(node_pid "$port")" ]] && running=1
    done
    if ((!running)) && [[ -n "$(cluster_strays)" ]]; then
        die "redis cluster nodes for $STACK run without pidfiles: run scripts/stack.sh stop --cluster first"
    fi
    for port in $(cluster_ports); do start_node "$port"; done
    for port in $(cluster_ports); do
        for ((i = 0; i < 100; i++)); do
            [[ "$(node_cli "$port" ping)" == "PONG" ]] && break
            sleep 0.1
        done
        [[ "$(node_cli "$port" ping)" == "PONG" ]] ||
            die "redis on port $port did not answer within 10 s: $(tail -n 1 "$(node_dir "$port")/redis.log" 2>/dev/null)"
    done
    # Made once: a first node that knows only itself and serves no slot is a new cluster. Nodes
    # started again from their nodes.conf find each other on their own.
    if [[ "$(node_info "$CLUSTER_PORT" cluster_known_nodes)" == 1 &&
        "$(node_info "$CLUSTER_PORT" cluster_slots_assigned)" == 0 ]]; then
        local nodes=() out
        for port in $(cluster_ports); do nodes+=("127.0.0.1:$port"); done
        if ! out="$(redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes </dev/null 2>&1)"; then
            die "redis-cli --cluster create failed: $(echo "$out" | grep -v '^\s*$' | tail -n 1)"
        fi
    fi
    local deadline=$((SECONDS + 30)) ok=0
    while ((SECONDS < deadline)); do
        ok=1
        for port in $(cluster_ports); do
            [[ "$(node_info "$port" cluster_state)" == ok ]] || ok=0
        done
        ((ok)) && break
        sleep 0.5
    done
    ((ok)) || die "the redis cluster on ports $CLUSTER_PORT-$((CLUSTER_PORT + 5)) is not ok after 30 s (see scripts/stack.sh status --cluster)"
    cat >"$ENV_FILE" <<ENV
export SEGSTREAM_REDIS__URL=redis://localhost:$CLUSTER_PORT/0
export SEGSTREAM_REDIS__CLUSTER=true
ENV
}

stop_cluster() {
    local pids port p i
    pids="$(cluster_strays)"
    for port in $(cluster_ports); do pids+=" $(node_pid "$port")"; done
    pids="$(echo "$pids" | tr ' ' '\n' | sort -u | grep -v '^$' || true)"
    if [[ -n "$pids" ]]; then
        # SIGTERM: each node flushes its AOF and saves its nodes.conf, then exits.
        for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
        for ((i = 0; i < 150; i++)); do
            local alive=0
            for p in $pids; do pid_alive "$p" && alive=1; done
            ((alive)) || break
            sleep 0.1
        done
        for p in $pids; do pid_alive "$p" && kill -KILL "$p" 2>/dev/null || true; done
    fi
    for port in $(cluster_ports); do rm -f "$(node_dir "$port")/redis.pid"; done
}

cluster_status() {
    local rc=0 port p role state masters=0
    for port in $(cluster_ports); do
        p="$(node_pid "$port")"
        if [[ -n "$p" ]] && [[ "$(node_cli "$port" ping)" == "PONG" ]]; then
            role="$(node_cli "$port" role | head -n 1)"
            state="$(node_info "$port" cluster_state)"
            [[ "$role" == master ]] && masters=$((masters + 1))
            echo "redis node: running (pid $p, port $port, $role, cluster_state ${state:-unknown})"
            [[ "$state" == ok ]] || rc=3
        elif [[ -n "$p" ]]; then
            echo "redis node: unhealthy (pid $p, no PONG on port $port)"
            rc=3
        else
            echo "redis node: stopped (port $port)"
            rc=3
        fi
    done
    echo "redis cluster: $masters masters, redis://localhost:$CLUSTER_PORT/0 (settings: $ENV_FILE); Kafka: the plaintext stack's"
    return $rc
}

# --- kafka ---------------------------------------------------------------------------------
render_kafka_config() {
    mkdir -p "$KDIR" "$KDATA"
    local files=("$ROOT/config/kafka/server.properties") broker_pw="" keystore_pw="" voters="" n
    ((BROKERS > 1)) && files+=("$ROOT/config/kafka/brokers.properties")
    for ((n = 1; n <= BROKERS; n++)); do
        voters+="${voters:+,}$n@127.0.0.1:$((KAFKA_CONTROLLER_PORT + n - 1))"
    done
    if ((SECURE)); then
        files+=("$ROOT/config/kafka/secure.properties")
        broker_pw="$(secret kafka-broker)"
        keystore_pw="$(cat "$TLS/keystore.password")"
    fi
    # Mode 600: with --secure it holds the broker's own SCRAM password and the keystore's.
    (
        umask 077
        cat "${files[@]}" | sed -e "s#@KAFKA_PORT@#$KAFKA_NODE_PORT#g" \
            -e "s#@KAFKA_CONTROLLER_PORT@#$KAFKA_NODE_CONTROLLER_PORT#g" \
            -e "s#@KAFKA_DATA_DIR@#$KDATA#g" \
            -e "s#@NODE_ID@#$NODE#g" \
            -e "s#@VOTERS@#$voters#g" \
            -e "s#@TLS_DIR@#$TLS#g" \
            -e "s#@BROKER_USER@#broker#g" \
            -e "s#@BROKER_PASSWORD@#$broker_pw#g" \
            -e "s#@KEYSTORE_PASSWORD@#$keystore_pw#g" \
            >"$KDIR/server.properties"
    )
}

# Small heap: the broker shares 2 cores and the box with Redis, the service and the tests; a
# cluster's three nodes smaller still. A function: the logs dir is the current node's.
HEAP=(-Xmx512m -Xms256m)
((BROKERS > 1)) && HEAP=(-Xmx384m -Xms128m)
java_opts() {
    JAVA_OPTS=(
        "${HEAP[@]}"
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$ROOT/config/kafka/log4j2.properties"
        "-Dkafka.logs.dir=$KDIR"
    )
}

format_kafka_storage() {
    # Format once: meta.properties in the data dir holds the cluster id from then on.
    [[ -f "$KDATA/meta.properties" ]] && return 0
    local cluster_id="" id_file="$KDIR/cluster-id"
    # A cluster's nodes share one id, kept beside them.
    if ((BROKERS > 1)); then
        id_file="$STACK/cluster-id"
        cluster_id="$(cat "$id_file" 2>/dev/null || true)"
    fi
    # A Kafka Uuid is 16 random bytes in unpadded url-safe base64 (what StorageTool
    # random-uuid prints), made here without paying for a second JVM start. Like Kafka's own
    # Uuid.randomUuid, redraw one that starts with '-': StorageTool would read it as an option
    # (1 start in 64 failed this way).
    if [[ -z "$cluster_id" ]]; then
        cluster_id="-"
        while [[ "$cluster_id" == -* ]]; do
            cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        done
        echo "$cluster_id" >"$id_file"
    fi
    # --secure: the SCRAM users exist from the start, in the formatted metadata.
    local scram=() user
    if ((SECURE)); then
        for user in broker segstream; do
            scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(secret "kafka-$user")]")
        done
    fi
    java_opts
    if ! java "${JAVA_OPTS[@]}" -cp "$KLIBS/*" kafka.tools.StorageTool format \
        --cluster-id "$cluster_id" --config "$KDIR/server.properties" --ignore-formatted \
        "${scram[@]}" >"$KDIR/format.out" 2>&1; then
        die "formatting the Kafka storage failed: $(grep -v '^\s*$' "$KDIR/format.out" | tail -n 1)"
    fi
}

# Launch the current node's JVM (not waiting for it); its pid in $KPID.
launch_kafka_node() {
    if [[ -n "$(kafka_strays)" ]]; then
        die "a broker for $STACK (node $NODE) runs without a pidfile: run scripts/stack.sh stop first"
    fi
    local p
    for p in "$KAFKA_NODE_PORT" "$KAFKA_NODE_CONTROLLER_PORT"; do
        port_open "$p" && die "kafka port $p is already in use by another process (set KAFKA_PORT/KAFKA_CONTROLLER_PORT)"
    done
    render_kafka_config
    format_kafka_storage
    java_opts
    # setsid + no inherited stdio: the broker outlives this script and never holds the pipes
    # of whoever called it (pytest's subprocess.run would otherwise wait for it forever).
    # The node marker is a separate argument after the stack's: "$KMARK " finds every node.
    local marks=("$KMARK")
    ((BROKERS > 1)) && marks+=("-Dsegstream.node=$NODE")
    setsid java "${JAVA_OPTS[@]}" "${marks[@]}" -cp "$KLIBS/*" kafka.Kafka "$KDIR/server.properties" \
        </dev/null >"$KDIR/kafka.out" 2>&1 9>&- &
    echo "$!" >"$KPID"
}

start_kafka() {
    command -v java >/dev/null || die "java not found: run scripts/bootstrap.sh"
    ls "$KLIBS"/kafka_2.13-*.jar >/dev/null 2>&1 || die "Kafka jars missing in $KLIBS: run scripts/bootstrap.sh"
    [[ -x "$VENV_PY" ]] || die "no .venv: run scripts/bootstrap.sh"
    # Every node first, then the waits: a cluster's node serves only once a quorum of the
    # controllers (two of three) runs.
    local n launched=0
    for ((n = 1; n <= BROKERS; n++)); do
        use_node "$n"
        # Already started by us (this or an earlier call): only waited for below.
        [[ -n "$(kafka_pid)" ]] && continue
        launch_kafka_node
        launched=1
    done
    for ((n = 1; n <= BROKERS; n++)); do
        use_node "$n"
        if ! (wait_kafka "$(kafka_pid)"); then
            # Leave no half-started broker behind; wait_kafka already printed the reason.
            ((launched)) && stop_kafka >/dev/null 2>&1
            exit 1
        fi
    done
    # New broker processes: the topics have to be (re)checked.
    ((launched)) && rm -f "$TOPICS_OK_DIR"/topics.ok.*
    return 0
}

wait_kafka() {
    local pid="$1" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    [[ -n "$pid" ]] || die "kafka node $NODE is not running: $(last_error_line) (log: $KDIR/server.log)"
    while ((SECONDS < deadline)); do
        pid_alive "$pid" || die "kafka exited during start-up: $(last_error_line) (log: $KDIR/server.log)"
        if port_open "$KAFKA_NODE_PORT" && kafka_ready; then return 0; fi
        sleep 0.5
    done
    die "kafka did not answer on port $KAFKA_NODE_PORT within ${KAFKA_START_TIMEOUT}s: $(last_error_line) (log: $KDIR/server.log)"
}

stop_kafka() {
    local pids="" p i n
    for ((n = 1; n <= BROKERS; n++)); do
        use_node "$n"
        pids+=" $(kafka_pid) $(kafka_strays)"
    done
    pids="$(echo "$pids" | tr ' ' '\n' | sort -u | grep -v '^$' || true)"
    if [[ -n "$pids" ]]; then
        # SIGTERM runs the broker's controlled shutdown (flushes logs, clean shutdown marker, so
        # the next start skips log recovery). A cluster's nodes all at once: each one's
        # controlled shutdown needs the controller quorum, which stopping them one by one would
        # take away from the last. Give them 60 s, then SIGKILL.
        for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
        for ((i = 0; i < 600; i++)); do
            local alive=0
            for p in $pids; do pid_alive "$p" && alive=1; done
            ((alive)) || break
            sleep 0.1
        done
        for p in $pids; do
            if pid_alive "$p"; then
                warn "kafka pid $p ignored SIGTERM for 60 s: killing it"
                kill -KILL "$p" 2>/dev/null || true
            fi
        done
    fi
    for ((n = 1; n <= BROKERS; n++)); do
        use_node "$n"
        rm -f "$KPID"
    done
    rm -f "$TOPICS_OK_DIR"/topics.ok.*
}

# --- topics --------------------------------------------------------------------------------
create_topics() {
    local pids="" n
    for ((n = 1; n <= BROKERS; n++)); do
        use_node "$n"
        pids+="${pids:+-}$(kafka_pid)"
    done
    # Once per broker process: a no-op start stays cheap (no CLI import per test session).
    [[ -f "$TOPICS_OK_DIR/topics.ok.$pids" ]] && return 0
    # This checkout's CLI, whatever the venv's editable install points at (a git worktree
    # shares the main checkout's .venv): its settings are the ones this script passes.
    local cli=(env "PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$VENV_PY" -m stream)
    # The CLI is written in parallel with this script: until `topics` exists, warn, go on.
    if [[ ! -x "$VENV_PY" ]] || ! "${cli[@]}" topics --help >/dev/null 2>&1; then
        warn "'segstream topics create' is not available yet: topics not created"
        return 0
    fi
    local out
    if ! out="$(
        if ((SECURE || BROKERS > 1)); then
            # shellcheck disable=SC1090
            . "$ENV_FILE"
        fi
        SEGSTREAM_KAFKA__BOOTSTRAP_SERVERS="$(bootstrap_servers)" "${cli[@]}" topics create 2>&1
    )"; then
        die "segstream topics create failed: $(echo "$out" | grep -v '^\s*$' | tail -n 1)"
    fi
    touch "$TOPICS_OK_DIR/topics.ok.$pids"
}

# --- commands ------------------------------------------------------------------------------
status() {
    local rc=0 p n name="kafka"
    for ((n = 1; n <= BROKERS; n++)); do
        use_node "$n"
        ((BROKERS > 1)) && name="kafka node $n"
        p="$(kafka_pid)"
        if [[ -n "$p" ]] && port_open "$KAFKA_NODE_PORT"; then
            local how=""
            ((SECURE)) && how=", SASL_SSL SCRAM-SHA-512"
            echo "$name: running (pid $p, bootstrap localhost:$KAFKA_NODE_PORT$how, controller $KAFKA_NODE_CONTROLLER_PORT)"
        elif [[ -n "$p" ]]; then
            echo "$name: starting or unhealthy (pid $p, port $KAFKA_NODE_PORT not open)"
            rc=3
        else
            echo "$name: stopped"
            rc=3
        fi
    done
    ((BROKERS > 1)) && echo "kafka: bootstrap $(bootstrap_servers); settings: $ENV_FILE"
    p="$(redis_pid)"
    if [[ -n "$p" ]] && redis_ping; then
        if ((SECURE)); then
            echo "redis: running (pid $p, rediss://localhost:$REDIS_PORT/0, ACL users; settings: $ENV_FILE)"
        else
            echo "redis: running (pid $p, redis://localhost:$REDIS_PORT/0)"
        fi
    elif [[ -n "$p" ]]; then
        echo "redis: unhealthy (pid $p, no PONG on port $REDIS_PORT)"
        rc=3
    else
        echo "redis: stopped"
        rc=3
    fi
    return $rc
}

main() {
    local cmd="$CMD"
    case "$cmd" in
        start | stop | restart | status) ;;
        *) usage ;;
    esac
    mkdir -p "$STACK"
    # One stack.sh at a time per checkout (test.sh and the pytest fixture may race).
    exec 9>"$STACK/.lock"
    flock -w 300 9 || die "another scripts/stack.sh holds $STACK/.lock"
    if ((SECURE)) && [[ "$cmd" == start || "$cmd" == restart ]]; then
        command -v openssl >/dev/null || die "openssl not found: run scripts/bootstrap.sh"
        "$ROOT/scripts/tls.sh" "$TLS" >/dev/null || die "making the TLS certificate in $TLS failed"
        write_env_file
    fi
    if ((BROKERS > 1)) && [[ "$cmd" == start || "$cmd" == restart ]]; then
        write_brokers_env_file
    fi
    if ((CLUSTER)); then
        case "$cmd" in
            start) start_cluster ;;
            stop) stop_cluster ;;
            restart)
                stop_cluster
                start_cluster
                ;;
            status) cluster_status ;;
        esac
        return
    fi
    case "$cmd" in
        start)
            start_redis
            start_kafka
            create_topics
            ;;
        stop)
            stop_kafka
            stop_redis
            ;;
        restart)
            stop_kafka
            stop_redis
            start_redis
            start_kafka
            create_topics
            ;;
        status) status ;;
    esac
}

main
