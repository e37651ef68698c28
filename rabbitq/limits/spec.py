"""What a limit is, and which apply to a task: pure, no broker.

Three global limits, shared by every worker process of every node, kept in RabbitMQ alone
(``docs/limits.md`` argues the design; ``amqp/limit_queues.py`` builds it):

* ``Rate(name, "20/s", burst=5)``: at most that many starts per second, minute or hour
  across the cluster, ``burst`` of them at once after a quiet spell (a token bucket);
* ``Concurrency(name, 3)``: at most 3 running at once across the cluster;
* ``Mutex(name, key="user_id", n=1)``: at most ``n`` running at once per key, the key read
  from the task's arguments (an argument's name, or a function of the arguments).

Tasks that name the same limit share it. A task has at most one rate and at most one of
concurrency or mutex (a slot limit): two slot limits held in turn could wait on each other.

``LocalRate`` is Celery's ``rate_limit="10/s"``: a bucket in each worker process, so a node
with ``--processes N`` runs up to N times the rate.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rabbitq.errors import ConfigurationError

PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
RATE_TEXT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*/\s*([smh])\s*")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")


def per_second(rate: str, what: str) -> float:
    """``"20/s"``, ``"100/m"``, ``"10/h"`` (Celery's spelling) as starts per second."""
    match = RATE_TEXT.fullmatch(rate) if isinstance(rate, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ConfigurationError(
            f"{what}: rate {rate!r} is not a positive number of starts per s, m or h "
            "(e.g. '20/s', '100/m', '10/h')"
        )
    return float(match.group(1)) / PERIODS[match.group(2)]


def _check_name(name: str) -> None:
    # ".key." would read as a mutex key in the queue names status parses (limits/names.py).
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".key." in name:
        raise ConfigurationError(
            f"limit name {name!r}: letters, digits and _ . : - (up to 100), starting with a "
            "letter or digit, without '.key.' (it names queues on the broker)"
        )


def _check_count(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{what} must be a whole number of at least 1, got {value!r}")


@dataclass(frozen=True)
class Rate:
    """At most ``rate`` starts across the cluster ("20/s", "100/m", "10/h"), up to ``burst``
    at once."""

    name: str
    rate: str
    burst: int = 1
    per_second: float = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(self, "per_second", per_second(self.rate, f"limit {self.name!r}"))
        _check_count(self.burst, f"limit {self.name!r}: burst")

    @property
    def kind(self) -> str:
        return "rate"


@dataclass(frozen=True)
class Concurrency:
    """At most ``n`` running at once across the cluster."""

    name: str
    n: int

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_count(self.n, f"limit {self.name!r}: concurrency")

    @property
    def kind(self) -> str:
        return "concurrency"


KeyFunction = Callable[..., object]


@dataclass(frozen=True)
class Mutex:
    """At most ``n`` running at once per key: ``key`` names an argument of the task, or is
    a function called with the task's arguments."""

    name: str
    key: str | KeyFunction
    n: int = 1

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_count(self.n, f"limit {self.name!r}: mutex")
        if not (isinstance(self.key, str) and self.key.isidentifier()) and not callable(self.key):
            raise ConfigurationError(
                f"limit {self.name!r}: key must name an argument or be a function of the "
                f"arguments, got {self.key!r}"
            )

    @property
    def kind(self) -> str:
        return "mutex"


Limit = Rate | Concurrency | Mutex
SlotLimit = Concurrency | Mutex


@dataclass(frozen=True)
class LocalRate:
    """Celery's ``rate_limit``: per worker process."""

    rate: str
    per_second: float = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_second", per_second(self.rate, "rate_limit"))


@dataclass(frozen=True)
class TaskLimits:
    """What holds one task back: its global limits, and its per-process rate."""

    rate: Rate | None = None
    slot: SlotLimit | None = None
    local: LocalRate | None = None

    def __bool__(self) -> bool:
        return self.rate is not None or self.slot is not None or self.local is not None

    @property
    def global_limits(self) -> tuple[Limit, ...]:
        return tuple(limit for limit in (self.rate, self.slot) if limit is not None)


NO_LIMITS = TaskLimits()


def declaration(limit: Limit) -> dict[str, Any]:
    """What a worker's heartbeat says of a limit it enforces (``rabbitq_limits``), so
    ``rabbitq status`` can say what each limit allows."""
    if isinstance(limit, Rate):
        return {"name": limit.name, "kind": "rate", "rate": limit.rate, "burst": limit.burst}
    return {"name": limit.name, "kind": limit.kind, "n": limit.n}


def combine(task: str, limits: Iterable[Limit], local: LocalRate | None) -> TaskLimits:
    """One task's limits, refusing two rates or two slot limits."""
    rate: Rate | None = None
    slot: SlotLimit | None = None
    for limit in limits:
        if not isinstance(limit, Rate | Concurrency | Mutex):
            raise ConfigurationError(
                f"task {task!r}: a limit is rabbitq.Rate, Concurrency or Mutex, got {limit!r}"
            )
        if isinstance(limit, Rate):
            if rate is not None and rate != limit:
                raise ConfigurationError(
                    f"task {task!r} has two rate limits ({rate.name!r}, {limit.name!r}): "
                    "one rate per task"
                )
            rate = limit
        else:
            if slot is not None and slot != limit:
                raise ConfigurationError(
                    f"task {task!r} has two slot limits ({slot.name!r}, {limit.name!r}): at "
                    "most one concurrency or mutex per task (held in turn, two could wait on "
                    "each other)"
                )
            slot = limit
    return TaskLimits(rate=rate, slot=slot, local=local)


def check_shared(limits: Mapping[str, Limit], limit: Limit) -> None:
    """Tasks naming one limit share it: the same name must mean the same limit."""
    known = limits.get(limit.name)
    if known is not None and known != limit:
        raise ConfigurationError(
            f"limit {limit.name!r} is declared twice, differently: {known!r} and {limit!r}"
        )


def key_of(mutex: Mutex, parameters: inspect.Signature, args: Sequence[Any],
           kwargs: Mapping[str, Any]) -> str:  # fmt: skip
    """The mutex key of one call (``str`` of the argument or of the function's value)."""
    if callable(mutex.key):
        return str(mutex.key(*args, **kwargs))
    try:
        bound = parameters.bind(*args, **kwargs)
    except TypeError as exc:
        raise ConfigurationError(f"limit {mutex.name!r}: cannot read the key: {exc}") from exc
    bound.apply_defaults()
    if mutex.key not in bound.arguments:
        raise ConfigurationError(
            f"limit {mutex.name!r}: the task has no argument {mutex.key!r} to key on"
        )
    return str(bound.arguments[mutex.key])


@dataclass(frozen=True)
class LimitRule:
    """A routing file's limit and the tasks (names or globs) it applies to."""

    limit: Limit
    tasks: tuple[str, ...]
    line: int | None = field(default=None, compare=False)

    def applies_to(self, task: str) -> bool:
        return any(p == task or fnmatch.fnmatchcase(task, p) for p in self.tasks)


def call_parameters(parameters: inspect.Signature, bound: bool) -> inspect.Signature:
    """What a caller passes: a ``bind=True`` task's first parameter is the task itself."""
    if not bound:
        return parameters
    return parameters.replace(parameters=list(parameters.parameters.values())[1:])


def check_key(task: str, mutex: Mutex, parameters: inspect.Signature) -> None:
    """A key naming an argument the task does not have would never be found: said now."""
    if isinstance(mutex.key, str) and mutex.key not in parameters.parameters:
        has_kwargs = any(p.kind is p.VAR_KEYWORD for p in parameters.parameters.values())
        if not has_kwargs:
            raise ConfigurationError(
                f"task {task!r}: limit {mutex.name!r} keys on {mutex.key!r}, which is not "
                f"one of its arguments ({', '.join(parameters.parameters) or 'none'})"
            )
