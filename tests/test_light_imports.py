"""``import rabbitq`` and its pure modules load no AMQP or Redis client: those come with the
first connection (a web app that only defines tasks, a test of a pure rule, stay light)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CLIENTS = ("pika", "aio_pika", "aiormq", "pamqp", "redis", "psycopg", "psycopg_pool")
PURE = (
    "rabbitq",
    "rabbitq.canvas",
    "rabbitq.delays",
    "rabbitq.message",
    "rabbitq.routing",
    "rabbitq.timeouts",
    "rabbitq.topology",
    "rabbitq.worker.decisions",
)


def clients_loaded_by(module: str) -> list[str]:
    code = (
        f"import sys, {module}\n"
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({CLIENTS!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [name for name in out.stdout.strip().split(",") if name]


@pytest.mark.parametrize("module", PURE)
def test_importing_a_pure_module_loads_no_broker_or_redis_client(module: str) -> None:
    assert clients_loaded_by(module) == []


def test_the_first_publisher_loads_the_amqp_client() -> None:
    code = (
        "import sys, rabbitq\n"
        "app = rabbitq.App('light', broker='amqp://guest:guest@127.0.0.1:1/')\n"
        "app.publisher\n"
        "print('pika' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
