"""``rabbitq status``'s options as docs/status.md states them (parsing only; no broker)."""

from __future__ import annotations

import pytest

from rabbitq.cli.status import status


@pytest.mark.parametrize(
    ("args", "watch", "as_json"),
    [
        ([], None, False),
        (["--watch"], 2.0, False),
        (["--watch", "5"], 5.0, False),
        (["--watch", "--json"], 2.0, True),
        (["--json"], None, True),
    ],
)
def test_watch_alone_refreshes_every_two_seconds_and_takes_a_period(
    args: list[str], watch: float | None, as_json: bool
) -> None:
    params = status.make_context("status", args).params
    assert (params["watch"], params["as_json"]) == (watch, as_json)
