"""Modules that moved keep their old import path for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import sys

import pytest

import rabbitq


@pytest.mark.parametrize(
    ("old", "names"),
    [
        ("rabbitq.result", ("AsyncResult", "GroupResult")),
        ("rabbitq.schedules", ("crontab", "Crontab", "Every", "PeriodicEntry")),
    ],
)
def test_an_old_module_path_still_imports_the_same_names_and_warns(
    old: str, names: tuple[str, ...]
) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=old):
        module = importlib.import_module(old)
    for name in names:
        assert getattr(module, name) is getattr(rabbitq, name)
