"""Deprecated alias, kept for one release: schedules live in ``rabbitq.beat.schedules``
(``rabbitq.crontab``, ``rabbitq.Crontab``, ``rabbitq.Every`` are the public names)."""

from __future__ import annotations

import warnings

from rabbitq.beat.schedules import Crontab, Every, PeriodicEntry, crontab

__all__ = ["Crontab", "Every", "PeriodicEntry", "crontab"]

warnings.warn(
    "rabbitq.schedules is now rabbitq.beat.schedules; import crontab, Crontab and Every from "
    "rabbitq",
    DeprecationWarning,
    stacklevel=2,
)
