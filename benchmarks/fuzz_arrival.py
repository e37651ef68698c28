"""Fuzz the worker's arrival decision by the ten thousand (issue 21), in memory, no broker.

    .venv/bin/python benchmarks/fuzz_arrival.py [--examples N] [--seed S]

Draws ``N`` deliveries (default 10,000) from ``tests/fuzz_strategies.py``, the strategies the
test suite runs a couple of hundred of: arbitrary bytes and headers, valid and mangled Celery
protocol v2 messages, protocol v1 shapes, deep and oversized bodies, signed, unsigned and
tampered ones. Each goes through ``decode_task`` and ``decide_arrival`` as a worker's would.
Prints how the deliveries were decided (run, dead-lettered by reason, recounted, later,
stopped), the decoder's outcomes, the decisions per second, and every crash: a decoder
exception that is not a ``MessageError``, a ``decide_arrival`` that raised, or a dead-letter
reason that is not a ``REASON_*`` constant. Exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from rabbitq import dead_letters  # noqa: E402
from rabbitq.errors import MessageError  # noqa: E402
from rabbitq.message import decode_task  # noqa: E402
from rabbitq.worker.decisions import DeadLetter, decide_arrival  # noqa: E402
from tests import fuzz_strategies as fuzz  # noqa: E402

REASONS = frozenset(
    value for name, value in vars(dead_letters).items() if name.startswith("REASON_")
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=21)
    options = parser.parse_args()

    tasks = fuzz.fuzz_app().tasks
    decisions: collections.Counter[str] = collections.Counter()
    decoder: collections.Counter[str] = collections.Counter()
    crashes: list[str] = []
    decide_seconds = 0.0

    @seed(options.seed)
    @settings(
        max_examples=options.examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzz.arrivals())
    def one(arrival: fuzz.Arrival) -> None:
        nonlocal decide_seconds
        try:
            decode_task(arrival.envelope)
            decoder["decoded"] += 1
        except MessageError as exc:
            decoder[f"MessageError: {exc.reason}"] += 1
        except Exception:
            crashes.append(f"decode_task raised:\n{traceback.format_exc()}")
        started = time.perf_counter()
        try:
            action = decide_arrival(arrival.envelope, tasks=tasks, **arrival.decide_kwargs())
        except Exception:
            crashes.append(f"decide_arrival raised:\n{traceback.format_exc()}")
            return
        finally:
            decide_seconds += time.perf_counter() - started
        if isinstance(action, DeadLetter):
            decisions[f"DeadLetter {action.reason}"] += 1
            if action.reason not in REASONS:
                crashes.append(f"unknown dead-letter reason {action.reason!r}")
        else:
            decisions[type(action).__name__] += 1

    started = time.perf_counter()
    one()
    elapsed = time.perf_counter() - started
    total = sum(decisions.values()) + sum(1 for c in crashes if "decide_arrival" in c)

    print(f"{total} deliveries in {elapsed:.1f} s (drawing included)")
    print(f"decide_arrival: {total / decide_seconds:,.0f} decisions/s, drawing excluded")
    print("\ndecide_arrival:")
    for name, count in decisions.most_common():
        print(f"  {count:7d}  {100 * count / total:5.1f}%  {name}")
    print("\ndecode_task:")
    for name, count in decoder.most_common():
        print(f"  {count:7d}  {100 * count / total:5.1f}%  {name}")
    print(f"\ncrashes: {len(crashes)}")
    for crash in crashes[:5]:
        print(crash)
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
