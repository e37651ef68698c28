"""Which limits hold each task back: its own (``@app.task(limits=..., rate_limit=...)``) and
the routing file's (``limits:``), checked together once, when a worker starts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rabbitq.limits.spec import (
    NO_LIMITS,
    Limit,
    LimitRule,
    Mutex,
    TaskLimits,
    call_parameters,
    check_key,
    check_shared,
    combine,
)


def task_limits(tasks: Mapping[str, Any], rules: Iterable[LimitRule]) -> dict[str, TaskLimits]:
    """Every task that has a limit, with its limits; raises ``ConfigurationError`` for a
    limit name meaning two things, two rates or two slot limits on one task, or a key the
    task's arguments do not have."""
    rules = tuple(rules)
    known: dict[str, Limit] = {}
    for rule in rules:
        check_shared(known, rule.limit)
        known[rule.limit.name] = rule.limit
    found: dict[str, TaskLimits] = {}
    for name, task in tasks.items():
        own: tuple[Limit, ...] = getattr(task, "limits", ())
        for limit in own:
            check_shared(known, limit)
            known[limit.name] = limit
        configured = [rule.limit for rule in rules if rule.applies_to(name)]
        limits = combine(name, (*own, *configured), getattr(task, "rate_limit", None))
        if not limits:
            continue
        if isinstance(limits.slot, Mutex):
            check_key(name, limits.slot, call_parameters(task.parameters, task.bind))
        found[name] = limits
    return found


def limits_of(found: Mapping[str, TaskLimits], task: str) -> TaskLimits:
    return found.get(task, NO_LIMITS)
