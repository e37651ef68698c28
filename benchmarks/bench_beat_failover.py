"""Beat failover: how long from SIGKILL of the leading beat until its successor leads and ticks.

    .venv/bin/python benchmarks/bench_beat_failover.py [--broker URL] [--kills 6] [--beats 3]

Three ``rabbitq beat`` processes (default options: a standby retries every 1 s) share an
every-second entry. The leader is SIGKILLed ``--kills`` times, one kill every 5 s at a random
phase, and a new beat process replaces each victim (as systemd or Kubernetes would).

Prints, per kill, the time until a standby holds the lease and until its first tick arrives
(which also waits for the next scheduled second); then what the queue received: every
scheduled second (skipped: must be 0) and seconds received twice (at most one per kill).
"""

from __future__ import annotations

import collections
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_core import argument_parser, broker  # noqa: E402
from integration.beat_support import run_failover_drill  # noqa: E402


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--beats", type=int, default=3)
    options = parser.parse_args()
    name = f"bench{uuid.uuid4().hex[:8]}"
    with broker(options.broker) as url:
        drill = run_failover_drill(
            url,
            Path(tempfile.mkdtemp()),
            queue=name,
            group=name,
            beats=options.beats,
            duration=5.0 * (options.kills + 1),
            kills=options.kills,
            respawn=True,
        )
    for number, kill in enumerate(drill.kills, 1):
        print(
            f"kill {number}: {kill.victim} -> {kill.successor or '?'}: lead taken after "
            f"{_seconds(kill.takeover_seconds)}, first tick after {_seconds(kill.failover_seconds)}"
        )
    for label, values in (
        ("kill -> lead taken", [k.takeover_seconds for k in drill.kills]),
        ("kill -> first tick", [k.failover_seconds for k in drill.kills]),
    ):
        known = [v for v in values if v is not None]
        if known:
            print(f"{label}: median {statistics.median(known):.2f} s, max {max(known):.2f} s")
    seconds = collections.Counter(tick.scheduled for tick in drill.ticks)
    first, last = min(seconds), max(seconds)
    span = int((last - first).total_seconds()) + 1
    twice = sorted(s for s, n in seconds.items() if n > 1)
    print(
        f"ticks: {len(drill.ticks)} received for {span} scheduled seconds; "
        f"skipped {span - len(seconds)}; received twice {len(twice)}"
    )
    late = max(t.received - t.scheduled.timestamp() for t in drill.ticks)
    print(f"latest tick: {late:.2f} s after its scheduled time")


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f} s"


if __name__ == "__main__":
    main()
