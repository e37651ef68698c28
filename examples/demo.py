"""The main job, end to end: a local broker, a worker, tasks flowing, results printed.

Run through ``bash scripts/demo.sh`` (which installs what it needs), or directly with
``python -m examples.demo`` inside the virtualenv.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack

import pika

import rabbitq
from rabbitq.testing import LocalBroker


def main() -> int:
    with ExitStack() as stack:
        url = os.environ.get("RABBITQ_BROKER_URL")
        if url:
            print("using the broker at $RABBITQ_BROKER_URL")
        else:
            print("starting a throwaway RabbitMQ node (no Docker needed)...", flush=True)
            broker = stack.enter_context(LocalBroker(management=False))
            url = broker.url
            os.environ["RABBITQ_BROKER_URL"] = url
            print(f"broker up at {url}")
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rabbitq",
                "worker",
                "-A",
                "examples.shop",
                "-Q",
                "emails,reports",
                "--loglevel",
                "INFO",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ready = threading.Event()
        ran: list[str] = []
        dead: list[str] = []

        def follow_worker() -> None:
            assert worker.stdout is not None
            for line in worker.stdout:
                line = line.rstrip()
                if "consuming" in line:
                    ready.set()
                if " dead-lettered to " in line:
                    dead.append(line)
                    print(f"  worker dead-lettered: {line.split('rabbitq.worker: ', 1)[-1]}")
                elif line.startswith(("[emails]", "[reports]")):  # what the tasks print
                    ran.append(line)
                    print(f"  worker ran: {line}")

        threading.Thread(target=follow_worker, daemon=True).start()
        if not ready.wait(60):
            worker.kill()
            print("the worker did not start", file=sys.stderr)
            return 1
        print("worker consuming queues emails and reports; sending tasks...")
        from examples import shop

        start = time.monotonic()
        handles = [
            shop.send_welcome.delay(1, "ada@example.com"),
            shop.send_welcome.delay(2, "grace@example.com"),
            shop.send_receipt.delay(1001, 59.90),
            shop.send_receipt.delay(1002, 12.00),
            shop.build_report.delay("2026-10", 18_250),
            shop.build_report.apply_async(("2026-11",), {"rows": 9_120}, priority=5),
            shop.broken_report.delay("2026-09"),
        ]
        print(
            f"sent {len(handles)} tasks, each confirmed by the broker "
            f"({time.monotonic() - start:.3f}s); ids: {', '.join(h.id[:8] for h in handles)}"
        )
        try:
            shop.app.send_task("shop.typo", routing_key="nobody.listens")
        except Exception as exc:
            print(f"an unroutable task raised at the caller: {type(exc).__name__}")
        deadline = time.monotonic() + 30
        while (len(ran) < 6 or not dead) and time.monotonic() < deadline:
            time.sleep(0.05)
        print("results (rpc:// backend: replies come back on this process's reply queue):")
        vat = shop.with_vat.delay(100.0).get(timeout=30)
        print(f"  with_vat.delay(100.0).get() -> {vat}")
        try:
            shop.broken_report.delay("2026-08").get(timeout=30)
        except Exception as exc:
            print(f"  broken_report(...).get() raised {type(exc).__name__}: {exc.args[0]}")
        pipeline = (shop.with_vat.s(10.0) | shop.with_vat.s()).delay().get(timeout=30)
        print(f"  chain with_vat(10) | with_vat -> {pipeline}")
        total = (
            rabbitq.chord(
                [shop.with_vat.s(amount) for amount in (10.0, 20.0, 30.0)], shop.invoice_total.s()
            )
            .apply_async()
            .get(timeout=30)
        )
        print(f"  chord of 3 with_vat -> invoice_total -> {total}")
        results_ok = (vat, pipeline, total) == (120.0, 14.4, 72.0)
        shop.app.close()
        print("stopping the worker (SIGTERM: finish running tasks, then exit)...")
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
        dead_count = _depth(url, "reports.dead")
        print(
            f"worker exited with {code}; {len(ran)} tasks ran, "
            f"{dead_count} failed task(s) kept in reports.dead with the traceback"
        )
        ok = len(ran) == 6 and dead_count == 2 and code == 0 and results_ok
        print("demo OK" if ok else "demo FAILED")
        return 0 if ok else 1


def _depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
