#!/usr/bin/env bash
# The main job: set up (virtualenv, package, RabbitMQ if missing), then run the demo:
# a throwaway broker, a worker on two queues, tasks sent and run, everything shut down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m examples.demo
