"""What losing a node costs (issue 21): the node-loss drill of ``integration/cluster_support.py``.

    .venv/bin/python benchmarks/bench_cluster_failover.py [--runs N]

Starts a three-node ``LocalCluster`` (the machine's rabbitmq-server; about 15 s), then runs
the drill ``--runs`` times (default 1) in each arrangement: the clients on the node that is
SIGKILLed, and the clients elsewhere with the task queue led by that node. Prints one line per
drill: confirmed and refused publishes, tasks missing once the node is back, tasks run twice,
countdowns early and held until the node returned, the chord body's runs, and the stalls
(longest publish around the kill, kill to the first task run, longest gap between beat
ticks). No timing is asserted; docs/cluster.md shows a run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from integration.cluster_support import run_node_loss_drill  # noqa: E402
from rabbitq.testing import LocalCluster  # noqa: E402

ARRANGEMENTS = {
    "clients on the victim": {"victim": 0, "clients_on": 0, "leaders_on": 0},
    "queues led by the victim": {"victim": 0, "clients_on": 1, "leaders_on": 0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    options = parser.parse_args()
    with LocalCluster(3) as cluster:
        for _ in range(options.runs):
            for name, arrangement in ARRANGEMENTS.items():
                with tempfile.TemporaryDirectory(prefix="rabbitq-drill-") as work:
                    report = run_node_loss_drill(cluster, Path(work), **arrangement)
                print(f"{name}: {report.summary()}", flush=True)


if __name__ == "__main__":
    main()
