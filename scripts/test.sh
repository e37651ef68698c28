#!/usr/bin/env bash
# The whole suite: bootstrap, then lint, types, unit tests and integration tests against a
# real RabbitMQ the tests start themselves (3.10, then 4.0 when run as root). Extra arguments
# go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The RabbitMQ 4.0 pass (scripts/rabbitmq4.sh test) sets RABBITQ_TEST_BROKER_PASS=1: set-up,
# lint, types and the broker-free specs in tests/ ran in the first pass; only integration/
# runs again, against the other broker.
TARGETS=(tests integration)
if [ -z "${RABBITQ_TEST_BROKER_PASS:-}" ]; then
    bash scripts/bootstrap.sh
    echo "test: ruff"
    .venv/bin/ruff check rabbitq tests integration benchmarks examples
    echo "test: mypy"
    .venv/bin/mypy
else
    [ -x .venv/bin/python ] || bash scripts/bootstrap.sh  # run on its own, on a fresh machine
    TARGETS=(integration)
fi
# In $RABBITQ_TEST_PROCESSES pytest processes (pytest-xdist, default 2: most integration tests
# wait on brokers and workers, not on the CPU), whole files to a process (--dist loadfile keeps
# a file's module fixtures in one place), each process with a broker of its own
# (integration/conftest.py). RABBITQ_TEST_PROCESSES=0 runs them in this one process, as does a
# single broker named in RABBITQ_TEST_URL (tests sharing a broker would see each other's).
if [ -n "${RABBITQ_TEST_URL:-}" ] && [ -z "${RABBITQ_TEST_URLS:-}" ]; then
    PROCESSES=${RABBITQ_TEST_PROCESSES:-0}
else
    PROCESSES=${RABBITQ_TEST_PROCESSES:-2}
fi
PARALLEL=()
if [ "$PROCESSES" != 0 ]; then
    PARALLEL=(-n "$PROCESSES" --dist loadfile)
fi
echo "test: pytest (${PROCESSES} processes)"
.venv/bin/python -m pytest "${TARGETS[@]}" "${PARALLEL[@]}" "$@"

# The same suite against RabbitMQ 4.0 (Debian trixie's, from a chroot: scripts/rabbitmq4.sh),
# unless a broker was named (RABBITQ_TEST_URL: that run is the one asked for) or
# RABBITQ_TEST_RABBITMQ4=0. It needs root; elsewhere it is skipped, and says so.
if [ -z "${RABBITQ_TEST_URL:-}" ] && [ "${RABBITQ_TEST_RABBITMQ4:-1}" != 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "test: pytest against RabbitMQ 4.0 (scripts/rabbitmq4.sh)"
        bash scripts/rabbitmq4.sh test "$@"
    else
        echo "test: SKIPPED the RabbitMQ 4.0 pass (needs root: sudo bash scripts/rabbitmq4.sh test)"
    fi
fi
