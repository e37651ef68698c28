#!/usr/bin/env bash
# The whole suite: bootstrap, then lint, types, unit tests and integration tests against a
# real RabbitMQ the tests start themselves. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "test: ruff"
.venv/bin/ruff check rabbitq tests integration benchmarks examples
echo "test: mypy"
.venv/bin/mypy
echo "test: pytest"
exec .venv/bin/python -m pytest tests integration "$@"
