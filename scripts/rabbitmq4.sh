#!/usr/bin/env bash
# A private RabbitMQ 4.0 node for running rabbitq's suite against RabbitMQ 4.x, without Docker.
#
# Why a chroot: Debian 12 (bookworm, this machine) ships rabbitmq-server 3.10.8 only, and Docker
# is not available here. Debian 13 (trixie) packages rabbitmq-server 4.0.x with its own Erlang
# 27, so this script debootstraps a trixie root once (from the Debian mirror the machine's own
# apt sources already use), installs rabbitmq-server in it (a policy-rc.d that exits 101 keeps
# Debian from starting any service there), caches it under $RABBITQ4_ROOT, and runs a throwaway
# node from it the way rabbitq/testing/local_broker.py runs a 3.10 one: the real
# /usr/lib/rabbitmq/bin/rabbitmq-server (not Debian's wrapper that switches to the rabbitmq
# user), with RABBITMQ_* variables giving it its own node name, data dir, Erlang cookie (HOME),
# epmd port, and free loopback ports for AMQP, management and distribution.
#
# The node runs in its own mount and PID namespaces (unshare): /proc, /dev and /sys are mounted
# into the root only inside that mount namespace, so they vanish with it and are never seen by
# (or left behind on) the machine; and every process of the node (beam, epmd, erl_child_setup)
# dies with the namespace's first process, so `stop` leaves no Erlang process behind. The
# network is the machine's own, but everything listens on 127.0.0.1 only. The machine's own
# rabbitmq-server (and any system service) is never touched.
#
#   scripts/rabbitmq4.sh start            start a node; prints RABBITQ_TEST_URL=... and
#                                         RABBITQ_TEST_MANAGEMENT_URL=... (eval-able)
#   scripts/rabbitmq4.sh stop             stop it, remove its data, check nothing is left
#   scripts/rabbitmq4.sh status           is it running, and where
#   scripts/rabbitmq4.sh test [pytest args]
#                                         start nodes of its own (one per pytest process,
#                                         $RABBITQ_TEST_PROCESSES, default 2), run scripts/test.sh
#                                         (its integration/ specs: RABBITQ_TEST_BROKER_PASS=1)
#                                         against them, stop them whatever happened; exits with
#                                         test.sh's code
#   scripts/rabbitmq4.sh diagnostics ARGS rabbitmq-diagnostics (e.g. server_version) on the node
#   scripts/rabbitmq4.sh root             only create (or check) the cached trixie root
#
# Settings (environment): RABBITQ4_ROOT (default /var/cache/rabbitq/trixie-root),
# RABBITQ4_INSTANCE (default "default"; start/stop/status/diagnostics act on it),
# RABBITQ4_STATE_DIR (default /run/rabbitq4), RABBITQ4_START_TIMEOUT (seconds, default 120),
# RABBITQ4_MIRROR (default: the first Debian mirror in /etc/apt/sources.list(.d)),
# RABBITQ4_EXTRA_CONF (lines appended to the node's rabbitmq.conf, e.g. to deny deprecated
# features as a later 4.x will: 'deprecated_features.permit.transient_nonexcl_queues = false').
# Needs root (debootstrap, chroot, namespaces).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${RABBITQ4_ROOT:-/var/cache/rabbitq/trixie-root}
ROOT=${ROOT%/}
SUITE=trixie
STATE_BASE=${RABBITQ4_STATE_DIR:-/run/rabbitq4}
INSTANCE=${RABBITQ4_INSTANCE:-default}
START_TIMEOUT=${RABBITQ4_START_TIMEOUT:-120}
STOP_TIMEOUT=30
PYTHON=${PYTHON:-python3}
READY_MARKER=.rabbitq-ready
NODE_DATA_BASE=/var/lib/rabbitq4 # inside the root

say() { printf 'rabbitmq4: %s\n' "$*" >&2; }
die() {
    printf 'rabbitmq4: error: %s\n' "$*" >&2
    exit 1
}

require_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and namespaces need it)"
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=...)"
    command -v unshare >/dev/null || die "unshare (util-linux) not found"
}

# Mount points at or below a path, as this (the machine's) mount namespace sees them.
mounts_under() {
    findmnt -rn -o TARGET | awk -v p="$1" '$0 == p || index($0, p "/") == 1'
}

# rm -rf that refuses to cross into a mount (a bind-mounted /dev must never be wiped).
safe_rm() {
    local path=$1
    [ -e "$path" ] || return 0
    case "$path" in
        /var/cache/rabbitq/* | "$ROOT"* | "$STATE_BASE"/*) ;;
        *) die "refusing to remove $path" ;;
    esac
    if [ -n "$(mounts_under "$path")" ]; then
        die "refusing to remove $path: something is mounted below it: $(mounts_under "$path" | tr '\n' ' ')"
    fi
    rm -rf --one-file-system -- "$path"
}

# The Debian mirror this machine's apt already uses (deb822 .sources or one-line .list files).
host_mirror() {
    if [ -n "${RABBITQ4_MIRROR:-}" ]; then
        printf '%s\n' "$RABBITQ4_MIRROR"
        return
    fi
    local f uris=""
    shopt -s nullglob
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uris+=$(sed -nE 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' "$f")$'\n'
    done
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
        [ -r "$f" ] || continue
        uris+=$(sed -nE 's/^URIs:[[:space:]]*//p' "$f" | tr -s ' \t' '\n')$'\n'
    done
    shopt -u nullglob
    local mirror
    mirror=$(printf '%s' "$uris" | grep -E '^(https?|file)://[^[:space:]]*/debian/?$' | grep -v -- '-security' | head -n 1 || true)
    [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list(.d); set RABBITQ4_MIRROR"
    printf '%s\n' "${mirror%/}"
}

APT_UPDATED=
host_apt_install() {
    if [ -z "$APT_UPDATED" ]; then
        say "apt-get update (host)"
        apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Run inside a fresh private mount namespace: mount /proc, /dev and /sys into the root ($1),
# then chroot into it and exec the rest. The mounts exist only in that namespace, so they
# disappear with its last process and are never left behind on the machine.
# shellcheck disable=SC2016 # expanded by the inner bash
NS_SCRIPT='
    set -e
    root=$1; shift
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    exec chroot "$root" "$@"
'

# Run a command in the root (see NS_SCRIPT). Extra unshare flags may precede "--".
in_root() {
    local root=$1
    shift
    local ns_flags=()
    while [ "$1" != -- ]; do
        ns_flags+=("$1")
        shift
    done
    shift
    unshare --mount --propagation private ${ns_flags[@]+"${ns_flags[@]}"} -- \
        /bin/bash -c "$NS_SCRIPT" rabbitmq4-ns "$root" "$@"
}

root_ready() { [ -f "$ROOT/$READY_MARKER" ] && [ -x "$ROOT/usr/lib/rabbitmq/bin/rabbitmq-server" ]; }

ensure_root() {
    if root_ready; then
        return 0
    fi
    require_root
    local started=$SECONDS cache_dir lock
    cache_dir=$(dirname "$ROOT")
    mkdir -p "$cache_dir"
    lock="$cache_dir/.$(basename "$ROOT").lock"
    exec 8>"$lock"
    flock 8
    if root_ready; then # another run built it while we waited
        exec 8>&-
        return 0
    fi
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap (apt-get)"
        host_apt_install debootstrap
    fi
    [ -f "/usr/share/debootstrap/scripts/$SUITE" ] ||
        die "this debootstrap does not know $SUITE; upgrade debootstrap"
    local mirror partial log
    mirror=$(host_mirror)
    partial="$ROOT.partial"
    log="$cache_dir/$(basename "$ROOT").build.log"
    safe_rm "$partial"
    : >"$log"
    say "creating a $SUITE root in $ROOT from $mirror (debootstrap; log: $log)"
    if ! debootstrap --variant=minbase "$SUITE" "$partial" "$mirror" >>"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "debootstrap failed (full log: $log)"
    fi
    # Keep Debian from starting services inside the root (rabbitmq-server, epmd).
    printf '#!/bin/sh\nexit 101\n' >"$partial/usr/sbin/policy-rc.d"
    chmod 755 "$partial/usr/sbin/policy-rc.d"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$partial/etc/hosts"
    say "installing rabbitmq-server in the root (apt-get in the chroot)"
    if ! in_root "$partial" -- /bin/sh -c '
            export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
            apt-get update -qq &&
            apt-get install -y -qq --no-install-recommends rabbitmq-server &&
            apt-get clean' >>"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "installing rabbitmq-server in the root failed (full log: $log)"
    fi
    [ -x "$partial/usr/lib/rabbitmq/bin/rabbitmq-server" ] ||
        die "rabbitmq-server installed, but $partial/usr/lib/rabbitmq/bin/rabbitmq-server is missing"
    local version
    # shellcheck disable=SC2016 # a dpkg-query format, not a shell expression
    version=$(in_root "$partial" -- dpkg-query -W -f '${Version}' rabbitmq-server)
    case "$version" in
        4.*) ;;
        *) die "$SUITE's rabbitmq-server is $version, not 4.x" ;;
    esac
    printf 'rabbitmq-server %s\n' "$version" >"$partial/$READY_MARKER"
    safe_rm "$ROOT" # an older, unfinished root
    mv "$partial" "$ROOT"
    exec 8>&-
    say "root ready: rabbitmq-server $version ($((SECONDS - started))s)"
}

# Four distinct free loopback ports: AMQP, management, distribution, epmd.
free_ports() {
    "$PYTHON" - <<'EOF'
import socket
socks = []
for _ in range(4):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

state_dir() { printf '%s/%s\n' "$STATE_BASE" "$1"; }

# Is the recorded unshare process still ours? (guards against a reused pid)
node_alive() {
    local pid=$1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
        tr '\0\n' '  ' <"/proc/$pid/cmdline" | grep -q '^unshare .*rabbitmq4-ns'
}

ns_init_of() { # the namespace's first process: the unshare process's child
    local pid=$1
    cat "/proc/$pid/task/$pid/children" 2>/dev/null | awk '{print $1}'
}

load_state() {
    local dir
    dir=$(state_dir "$1")
    [ -f "$dir/env" ] || return 1
    # shellcheck disable=SC1091
    . "$dir/env"
}

print_urls() {
    printf 'RABBITQ_TEST_URL=%s\n' "amqp://guest:guest@127.0.0.1:$AMQP_PORT/"
    printf 'RABBITQ_TEST_MANAGEMENT_URL=%s\n' "http://guest:guest@127.0.0.1:$MGMT_PORT/"
}

# Poll until the node answers an AMQP handshake and the management API's overview; print its
# versions. Fails early if the node's process is gone.
wait_until_ready() {
    "$PYTHON" - "$PID" "$AMQP_PORT" "$MGMT_PORT" "$START_TIMEOUT" <<'EOF'
import base64, json, os, socket, sys, time, urllib.request
pid, amqp, mgmt, timeout = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
deadline = time.monotonic() + timeout

def alive():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"

def amqp_answers():
    try:
        with socket.create_connection(("127.0.0.1", amqp), timeout=2) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            return s.recv(1)[:1] == b"\x01"  # a method frame: connection.start
    except OSError:
        return False

def overview():
    request = urllib.request.Request(f"http://127.0.0.1:{mgmt}/api/overview")
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None

while time.monotonic() < deadline:
    if not alive():
        print("rabbitmq4: error: the node exited while starting", file=sys.stderr)
        sys.exit(2)
    if amqp_answers():
        info = overview()
        if info is not None:
            print(f"RabbitMQ {info.get('rabbitmq_version')} "
                  f"(Erlang {info.get('erlang_version')}), node {info.get('node')}")
            sys.exit(0)
    time.sleep(0.5)
print(f"rabbitmq4: error: the node did not answer within {timeout:.0f}s", file=sys.stderr)
sys.exit(1)
EOF
}

# Clean up after nodes whose owner vanished (a `test` run that was SIGKILLed, say): their
# processes are gone (see start_node), but their data and state are not.
sweep_stale() {
    local env
    shopt -s nullglob
    for env in "$STATE_BASE"/*/env; do
        (
            load_state "$(basename "$(dirname "$env")")" || exit 0
            node_alive "$PID" && exit 0
            say "cleaning up after a node that is gone: $NODE"
            stop_node "$(basename "$(dirname "$env")")" >/dev/null 2>&1
        ) || true
    done
    shopt -u nullglob
}

# Start the node of instance $1; sets PID, NODE, AMQP_PORT, MGMT_PORT, ... for the caller.
# With $2 = tied, the node is killed if this script dies (even by SIGKILL): for `test`.
start_node() {
    local instance=$1 tied=${2:-} dir
    dir=$(state_dir "$instance")
    sweep_stale
    if load_state "$instance"; then
        if node_alive "$PID"; then
            say "instance '$instance' is already running (node $NODE)"
            return 0
        fi
        say "instance '$instance' left stale state behind; cleaning it up"
        stop_node "$instance"
    fi
    ensure_root
    require_root
    local ports id started=$SECONDS
    ports=$(free_ports)
    read -r AMQP_PORT MGMT_PORT DIST_PORT EPMD_PORT <<<"$ports"
    id=$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')
    NODE="rabbitq4-$id@localhost"
    DATA_IN="$NODE_DATA_BASE/$instance-$id"
    local data="$ROOT$DATA_IN"
    mkdir -p "$dir" "$data/home" "$data/mnesia" "$data/log"
    chmod 700 "$data/home"
    od -An -N15 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F' >"$data/home/.erlang.cookie"
    chmod 400 "$data/home/.erlang.cookie"
    cat >"$data/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
loopback_users = none
management.tcp.port = $MGMT_PORT
management.tcp.ip = 127.0.0.1
EOF
    if [ -n "${RABBITQ4_EXTRA_CONF:-}" ]; then
        printf '%s\n' "$RABBITQ4_EXTRA_CONF" >>"$data/rabbitmq.conf"
    fi
    echo '[rabbitmq_management].' >"$data/enabled_plugins"
    LOG="$dir/node.log"
    : >"$LOG"
    say "starting RabbitMQ node $NODE from $ROOT (amqp $AMQP_PORT, management $MGMT_PORT; log: $LOG)"
    # setsid: the node is not in our process group (a Ctrl-C at a terminal reaches it only
    # through stop). --kill-child: if unshare dies, so does the namespace. For `test`,
    # setpriv --pdeathsig: unshare (so the namespace) dies with this script.
    local tie=()
    [ "$tied" = tied ] && tie=(setpriv --pdeathsig KILL)
    setsid ${tie[@]+"${tie[@]}"} unshare --mount --propagation private --pid --fork --kill-child=SIGKILL -- \
        /bin/bash -c "$NS_SCRIPT" rabbitmq4-ns "$ROOT" \
        /usr/bin/env -i \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 LC_ALL=C.UTF-8 \
        HOME="$DATA_IN/home" \
        ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_NODENAME="$NODE" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$AMQP_PORT" \
        RABBITMQ_DIST_PORT="$DIST_PORT" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        RABBITMQ_MNESIA_BASE="$DATA_IN/mnesia" \
        RABBITMQ_LOG_BASE="$DATA_IN/log" \
        RABBITMQ_CONFIG_FILE="$DATA_IN/rabbitmq.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$DATA_IN/enabled_plugins" \
        RABBITMQ_PID_FILE="$DATA_IN/rabbitmq.pid" \
        RABBITMQ_LOGS=- \
        ERL_CRASH_DUMP="$DATA_IN/erl_crash.dump" \
        /usr/lib/rabbitmq/bin/rabbitmq-server \
        </dev/null >>"$LOG" 2>&1 &
    PID=$!
    cat >"$dir/env" <<EOF
PID=$PID
NODE=$NODE
AMQP_PORT=$AMQP_PORT
MGMT_PORT=$MGMT_PORT
DIST_PORT=$DIST_PORT
EPMD_PORT=$EPMD_PORT
DATA_IN=$DATA_IN
LOG=$LOG
EOF
    local _
    for _ in $(seq 50); do
        [ -n "$(ns_init_of "$PID")" ] && break
        node_alive "$PID" || break
        sleep 0.1
    done
    local init
    init=$(ns_init_of "$PID")
    [ -n "$init" ] && echo "PIDNS=$(readlink "/proc/$init/ns/pid")" >>"$dir/env"
    if ! VERSION=$(wait_until_ready); then
        say "last lines of the node's log ($LOG):"
        tail -n 25 "$LOG" >&2 || true
        stop_node "$instance" || true
        die "the RabbitMQ 4 node did not start"
    fi
    say "ready in $((SECONDS - started))s: $VERSION"
    case "$VERSION" in
        "RabbitMQ 4."*) ;;
        *) say "warning: expected RabbitMQ 4.x, got: $VERSION" ;;
    esac
}

# Kill whatever is left in the node's PID namespace (there should be nothing).
kill_namespace_leftovers() {
    local pidns=$1 p left=()
    [ -n "$pidns" ] || return 0
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$pidns" ] && left+=("${p#/proc/}")
    done
    if [ ${#left[@]} -gt 0 ]; then
        say "killing leftover processes of the node: ${left[*]}"
        kill -KILL "${left[@]}" 2>/dev/null || true
    fi
}

stop_node() {
    local instance=$1 dir
    dir=$(state_dir "$instance")
    PIDNS=
    if ! load_state "$instance"; then
        say "no node running for instance '$instance'"
        return 0
    fi
    if node_alive "$PID"; then
        local init waited=0
        init=$(ns_init_of "$PID")
        say "stopping node $NODE"
        # SIGTERM to the namespace's first process (rabbitmq-server's shell): it stops the
        # Erlang VM gracefully; when it exits the kernel kills the rest (epmd).
        [ -n "$init" ] && kill -TERM "$init" 2>/dev/null || true
        while node_alive "$PID" && [ "$waited" -lt $((STOP_TIMEOUT * 10)) ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        if node_alive "$PID"; then
            say "node did not stop within ${STOP_TIMEOUT}s; killing it"
            [ -n "$init" ] && kill -KILL "$init" 2>/dev/null || true
            kill -KILL "$PID" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    kill_namespace_leftovers "$PIDNS"
    local left
    left=$(mounts_under "$ROOT")
    [ -z "$left" ] || say "warning: mounts below $ROOT in the machine's namespace (not made by this script): $left"
    if [ -n "${DATA_IN:-}" ]; then
        safe_rm "$ROOT$DATA_IN"
    fi
    if [ -f "$dir/node.log" ]; then
        mv -f "$dir/node.log" "$STATE_BASE/$instance.last.log"
    fi
    safe_rm "$dir"
    say "stopped (node log kept in $STATE_BASE/$instance.last.log)"
}

cmd_start() {
    require_root
    start_node "$INSTANCE"
    print_urls
}

cmd_stop() {
    require_root
    stop_node "$INSTANCE"
    sweep_stale
}

cmd_status() {
    if load_state "$INSTANCE" && node_alive "$PID"; then
        say "instance '$INSTANCE': node $NODE running (unshare pid $PID)"
        print_urls
    else
        say "instance '$INSTANCE': not running"
        return 1
    fi
}

cmd_diagnostics() {
    require_root
    if ! load_state "$INSTANCE" || ! node_alive "$PID"; then
        die "instance '$INSTANCE' is not running"
    fi
    in_root "$ROOT" -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        LC_ALL=C.UTF-8 HOME="$DATA_IN/home" ERL_EPMD_PORT="$EPMD_PORT" \
        /usr/lib/rabbitmq/bin/rabbitmq-diagnostics -n "$NODE" "$@"
}

TEST_INSTANCES=()
TEST_PID=
INTERRUPTED=
cleanup_test() {
    local rc=$? instance
    trap - EXIT INT TERM HUP
    for instance in "${TEST_INSTANCES[@]}"; do
        stop_node "$instance" || rc=1
    done
    exit "$rc"
}

# A signal while the suite runs goes on to the suite's process group (pytest and the workers
# it started); the nodes are stopped once they have finished.
forward_signal() {
    INTERRUPTED=$1
    if [ -n "$TEST_PID" ]; then
        kill "-$1" -- "-$TEST_PID" 2>/dev/null || true
    else
        exit $((128 + $(kill -l "$1")))
    fi
}

cmd_test() {
    require_root
    # Nodes of its own, so it never stops one someone started with `start`: one per pytest
    # process (scripts/test.sh runs the integration tests in $RABBITQ_TEST_PROCESSES of them,
    # each against its own broker, as it does with the throwaway 3.10 nodes).
    local processes=${RABBITQ_TEST_PROCESSES:-2} i urls=() management_urls=()
    [[ "$processes" =~ ^[1-9][0-9]*$ ]] || die "RABBITQ_TEST_PROCESSES must be a positive number"
    trap cleanup_test EXIT
    trap 'forward_signal INT' INT
    trap 'forward_signal TERM' TERM
    trap 'forward_signal HUP' HUP
    for ((i = 0; i < processes; i++)); do
        TEST_INSTANCES+=("test-$$-$i")
        start_node "test-$$-$i" tied
        urls+=("amqp://guest:guest@127.0.0.1:$AMQP_PORT/")
        management_urls+=("http://guest:guest@127.0.0.1:$MGMT_PORT/")
    done
    local rc=0
    say "running scripts/test.sh $* against $VERSION"
    # In the background (its own process group, with set -m) and waited for, so that a
    # signal reaches our trap at once instead of after the suite.
    set -m
    # RABBITQ_TEST_URL names the first (a serial run uses it); RABBITQ_TEST_URLS all of them,
    # one per pytest process (integration/conftest.py).
    RABBITQ_TEST_URL="${urls[0]}" RABBITQ_TEST_MANAGEMENT_URL="${management_urls[0]}" \
        RABBITQ_TEST_URLS="${urls[*]}" RABBITQ_TEST_MANAGEMENT_URLS="${management_urls[*]}" \
        RABBITQ_TEST_PROCESSES="$processes" RABBITQ_TEST_BROKER_PASS=1 \
        bash "$REPO/scripts/test.sh" "$@" &
    TEST_PID=$!
    set +m
    while :; do
        rc=0
        wait "$TEST_PID" || rc=$?
        kill -0 "$TEST_PID" 2>/dev/null || break
    done
    TEST_PID=
    if [ -n "$INTERRUPTED" ]; then
        say "interrupted (SIG$INTERRUPTED); scripts/test.sh exited with $rc"
        return $((128 + $(kill -l "$INTERRUPTED")))
    fi
    say "scripts/test.sh exited with $rc (against $VERSION)"
    return "$rc"
}

usage() {
    sed -n '/^#   scripts/,/^# Settings/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local command=${1:-}
    [ $# -gt 0 ] && shift
    case "$command" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        test) cmd_test "$@" ;;
        diagnostics) cmd_diagnostics "$@" ;;
        root)
            require_root
            ensure_root
            cat "$ROOT/$READY_MARKER"
            ;;
        -h | --help | help | "") usage ;;
        *)
            say "unknown command: $command"
            usage
            ;;
    esac
}

main "$@"
