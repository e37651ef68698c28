"""What signed messages cost (issue 21), in memory, no broker.

    .venv/bin/python benchmarks/bench_signing.py [--messages N] [--runs R]

Per message, for a small task (two int arguments) and one carrying a 100 KB string: the
HMAC-SHA256 signature a publisher adds (``Signer.sign``), the check a worker makes
(``Signer.check``), next to what decoding it costs anyway (``decode_task``) and the size and
depth checks before decoding (``message_size.incoming_refusal``). Then the whole worker
pipeline (``worker/pipeline.py``, an ``async def`` no-op task, in-memory publisher and acks)
with and without a signing App: the difference is what signing costs a worker per delivery.
Medians of R runs, interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rabbitq.message import decode_task  # noqa: E402
from rabbitq.message_size import DEFAULT_MAX_MESSAGE_SIZE, incoming_refusal  # noqa: E402
from rabbitq.signing import signer_from_settings  # noqa: E402
from tests.pipeline_support import harness, make_app, task_envelope  # noqa: E402

KEY = "a-32-byte-long-signing-key-here!"


def per_call(work: Callable[[], Any], count: int) -> float:
    """Microseconds per call."""
    started = time.perf_counter()
    for _ in range(count):
        work()
    return (time.perf_counter() - started) / count * 1e6


def micro(messages: int, runs: int) -> None:
    signer = signer_from_settings(KEY, None)
    assert signer is not None
    for label, args in (("small", (1, 2)), ("100 KB", ("x" * 100_000,))):
        plain = task_envelope("noop", *args)
        signed = signer.sign(plain)
        assert signer.check(signed) is None
        figures: dict[str, list[float]] = {"sign": [], "check": [], "decode": [], "limits": []}
        count = messages if label == "small" else messages // 20
        calls: dict[str, Callable[[], Any]] = {
            "sign": lambda plain=plain: signer.sign(plain),
            "check": lambda signed=signed: signer.check(signed),
            "decode": lambda signed=signed: decode_task(signed),
            "limits": lambda signed=signed: incoming_refusal(signed, DEFAULT_MAX_MESSAGE_SIZE),
        }
        for _ in range(runs):
            for name, call in calls.items():
                figures[name].append(per_call(call, count))
        medians = {name: statistics.median(values) for name, values in figures.items()}
        print(
            f"{label:>7} body ({len(signed.body):>6} B): sign {medians['sign']:6.2f} µs, "
            f"check {medians['check']:6.2f} µs, decode {medians['decode']:6.2f} µs, "
            f"size+depth {medians['limits']:6.2f} µs; check = "
            f"{medians['check'] / medians['decode']:.2f}x decode"
        )


async def pipeline_rate(signing: bool, deliveries: int) -> float:
    app = make_app(signing_key=KEY) if signing else make_app()

    @app.task(name="noop")
    async def noop() -> None:
        return None

    h = harness(app)
    envelope = task_envelope("noop")
    if app.signer is not None:
        envelope = app.signer.sign(envelope)
    started = time.perf_counter()
    for _ in range(deliveries):
        await h.deliver(envelope)
    elapsed = time.perf_counter() - started
    assert len(h.acks.acked) == deliveries and not h.dead(), "signed deliveries must run"
    return deliveries / elapsed


def pipeline(deliveries: int, runs: int) -> None:
    rates: dict[bool, list[float]] = {False: [], True: []}
    for signing in (False, True):  # warm-up
        asyncio.run(pipeline_rate(signing, deliveries // 10))
    for _ in range(runs):
        for signing in (False, True):
            rates[signing].append(asyncio.run(pipeline_rate(signing, deliveries)))
    plain, signed = (statistics.median(rates[s]) for s in (False, True))
    print(
        f"pipeline: unsigned {plain:8.0f}/s, signed {signed:8.0f}/s "
        f"({1e6 / signed - 1e6 / plain:+.2f} µs per delivery, {signed / plain:.3f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    micro(options.messages, options.runs)
    pipeline(options.messages, options.runs)


if __name__ == "__main__":
    main()
