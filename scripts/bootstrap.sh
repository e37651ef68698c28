#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine with only Python: virtualenv, the package with
# its dev extras, and the rabbitmq-server / redis-server / PostgreSQL binaries the tests and demo
# start privately (they never use a system service or cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'bootstrap: %s\n' "$*"; }
is_root() { [ "$(id -u)" = 0 ]; }
apt_install() {
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "bootstrap: Python 3.11 or newer is required (found: $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        if is_root && command -v apt-get >/dev/null; then
            say "installing python3-venv"
            apt_install python3-venv
            "$PYTHON" -m venv .venv
        else
            echo "bootstrap: '$PYTHON -m venv' failed; install python3-venv" >&2
            exit 1
        fi
    fi
fi

say "installing rabbitq and its dev dependencies into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,redis]'

missing=()
ls /usr/lib/rabbitmq/bin/rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
# Debian keeps initdb off the PATH, in /usr/lib/postgresql/<version>/bin.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 \
    || missing+=(postgresql)
# psycopg (pure Python) loads the system's libpq; postgresql brings it, a client-only box may not.
compgen -G '/usr/lib/*/libpq.so.5' >/dev/null || compgen -G '/usr/lib/libpq.so.5' >/dev/null \
    || missing+=(libpq5)
# The dashboard's browser spec drives Debian's Chromium through Playwright (Playwright's own
# browser download is not reachable here).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    if is_root && command -v apt-get >/dev/null; then
        say "installing ${missing[*]} (apt-get)"
        # The tests run their own private nodes; keep Debian from starting system services
        # (postgresql's package would also create and start a system cluster).
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        apt_install "${missing[@]}"
    else
        echo "bootstrap: please install ${missing[*]} (e.g. sudo apt-get install ${missing[*]})," >&2
        echo "           or set RABBITQ_TEST_URL / RABBITQ_BROKER_URL to a running broker" >&2
        exit 1
    fi
fi
say "ready"
