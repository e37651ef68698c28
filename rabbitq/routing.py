"""Routing files: operations-owned YAML -> ``Topology``, validated strictly, errors with lines.

    default_queue_type: classic          # classic | quorum, for queues not listed below
    delay_queue_type: quorum             # the delay levels: quorum (default) | classic
    queues:
      emails:
        type: quorum
        bindings: ["emails.#"]           # topic patterns; default [emails, emails.#]
        max_length: 100000
        max_length_bytes: 10000000
        overflow: reject-publish         # drop-head | reject-publish | reject-publish-dlx
        message_ttl: 3600000             # milliseconds
        max_priority: 10                 # classic queues only
        delivery_limit: 100              # quorum queues only: the broker's backstop
        dead_letters:                    # opt-in bounds on emails.dead, applied as a policy
          max_length: 10000              # the oldest dead letters are dropped first
          message_ttl: 604800000         # milliseconds
      reports: {}
    policy_priority: 100                 # priority of rabbitq's dead-queue policies
    events:
      history:                           # the stream rabbitq.events (docs/events.md)
        max_age: 24h                     # a number and Y, M, D, h, m or s
        max_bytes: 1GiB                  # bytes, or with kB MB GB TB / KiB MiB GiB TiB
    tasks:                               # task name or glob -> routing key; first match wins
      shop.tasks.send_email: emails.transactional
      "shop.reports.*": reports
    limits:                              # global limits, across every worker (docs/limits.md)
      mail: {rate: 20/s, burst: 5, tasks: [shop.tasks.send_email]}
      reports: {concurrency: 3, tasks: ["shop.reports.*"]}
      per-user: {mutex: 1, key: user_id, tasks: [shop.tasks.sync_user]}

The file is read strictly through ``yaml_file`` so that every error names its line.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Callable
from typing import Any, cast

import yaml

from rabbitq.errors import ConfigurationError, RoutingConfigError
from rabbitq.limits.spec import Concurrency, Limit, LimitRule, Mutex, Rate
from rabbitq.topology import (
    DEFAULT_POLICY_PRIORITY,
    UNREACHABLE_DELIVERY_LIMIT,
    DeadLetterBounds,
    EventHistory,
    QueueSpec,
    QueueType,
    TaskRoute,
    Topology,
)
from rabbitq.yaml_file import NodeReader, compose, line_of, read_text

MAX_NAME_BYTES = 255
TOP_LEVEL_KEYS = (
    "default_queue_type", "delay_queue_type", "queues", "tasks", "policy_priority", "events",
    "limits",
)  # fmt: skip
LIMIT_KEYS = ("rate", "burst", "concurrency", "mutex", "key", "tasks")
LIMIT_KINDS = ("rate", "concurrency", "mutex")
EVENTS_KEYS = ("history",)
HISTORY_KEYS = ("max_age", "max_bytes")
MAX_AGE = re.compile(r"[1-9][0-9]*[YMDhms]")
BYTE_UNITS = {
    "": 1, "B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}  # fmt: skip
BYTES = re.compile(r"([0-9]+)\s*([A-Za-z]*)")
QUEUE_KEYS = (
    "type", "bindings", "max_length", "max_length_bytes", "overflow", "message_ttl",
    "max_priority", "delivery_limit", "dead_letters",
)  # fmt: skip
DEAD_LETTER_KEYS = ("max_length", "message_ttl")
QUEUE_TYPES = ("classic", "quorum")
OVERFLOWS = ("drop-head", "reject-publish", "reject-publish-dlx")


def validate_topic_pattern(pattern: str) -> str | None:
    """A problem with a binding pattern, or None. ``*`` and ``#`` only as whole words."""
    problem = _check_name(pattern, "pattern")
    if problem:
        return problem
    for word in pattern.split("."):
        if word == "":
            return f"pattern {pattern!r} has an empty word (two dots, or a dot at an end)"
        if word not in ("*", "#") and ("*" in word or "#" in word):
            return f"pattern {pattern!r}: '*' and '#' must be whole words, as in 'emails.#'"
    return None


# Cached: a process publishes to a handful of keys, each checked on every publish otherwise.
@functools.lru_cache(maxsize=1024)
def validate_routing_key(key: str) -> str | None:
    """A problem with a routing key used for publishing, or None (no wildcards allowed)."""
    problem = _check_name(key, "routing key")
    if problem:
        return problem
    words = key.split(".")
    if "" in words:
        return f"routing key {key!r} has an empty word (two dots, or a dot at an end)"
    if any("*" in word or "#" in word for word in words):
        return f"routing key {key!r} contains a wildcard; wildcards belong in bindings"
    return None


def route_for_task(topology: Topology, task_name: str) -> str | None:
    for route in topology.task_routes:
        if route.task_pattern == task_name or fnmatch.fnmatchcase(task_name, route.task_pattern):
            return route.routing_key
    return None


def load_routing(path: str | os.PathLike[str]) -> Topology:
    text, source = read_text(path, RoutingConfigError)
    return parse_routing(text, source)


def parse_routing(text: str, source: str = "<routing>") -> Topology:
    root = compose(text, source, RoutingConfigError)
    if root is None:
        return Topology(source=source)
    return _Parser(source).topology(root)


def _check_name(value: str, what: str) -> str | None:
    if not value:
        return f"{what} is empty"
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        return f"{what} {value[:40]!r}... is longer than {MAX_NAME_BYTES} bytes"
    if any(c.isspace() for c in value):
        return f"{what} {value!r} contains white space"
    return None


class _Parser(NodeReader):
    def __init__(self, source: str) -> None:
        super().__init__(source, RoutingConfigError)

    def topology(self, root: yaml.Node) -> Topology:
        default_type: QueueType = "classic"
        delay_type: QueueType = "quorum"
        queues: list[QueueSpec] = []
        routes: list[TaskRoute] = []
        priority = DEFAULT_POLICY_PRIORITY
        history: EventHistory | None = None
        limits: list[LimitRule] = []
        for key, value in self.mapping(root, "the routing file", TOP_LEVEL_KEYS):
            if key.value == "default_queue_type":
                default_type = cast(
                    QueueType, self.choice(value, "default_queue_type", QUEUE_TYPES)
                )
            elif key.value == "delay_queue_type":
                delay_type = cast(QueueType, self.choice(value, "delay_queue_type", QUEUE_TYPES))
            elif key.value == "policy_priority":
                priority = self.integer(value, "policy_priority", 0)
            elif key.value == "queues":
                queues = [self.queue(k, v) for k, v in self.mapping(value, "queues", None)]
            elif key.value == "events":
                history = self.events(value)
            elif key.value == "limits":
                limits = [self.limit(k, v) for k, v in self.mapping(value, "limits", None)]
            else:
                routes = [self.route(k, v) for k, v in self.mapping(value, "tasks", None)]
        return Topology(
            queues=tuple(queues),
            task_routes=tuple(routes),
            default_queue_type=default_type,
            delay_queue_type=delay_type,
            policy_priority=priority,
            event_history=history,
            limits=tuple(limits),
            source=self.source,
        )

    def limit(self, key: yaml.ScalarNode, value: yaml.Node) -> LimitRule:
        name = key.value
        where = f"limit {name!r}"
        fields: dict[str, yaml.Node] = {}
        for field_key, field_value in self.mapping(value, where, LIMIT_KEYS):
            fields[field_key.value] = field_value
        kinds = [kind for kind in LIMIT_KINDS if kind in fields]
        if len(kinds) != 1:
            raise self.fail(
                key,
                f"{where} needs exactly one of rate, concurrency, mutex (has {kinds or 'none'})",
            )
        if "tasks" not in fields:
            raise self.fail(key, f"{where} needs tasks: the task names or globs it holds back")
        for only, kind in (("burst", "rate"), ("key", "mutex")):
            if only in fields and kinds[0] != kind:
                raise self.fail(fields[only], f"{where}: {only} goes with {kind} only")
        tasks = self.task_patterns(fields["tasks"], where)
        try:
            limit: Limit
            if kinds[0] == "rate":
                burst = (
                    self.integer(fields["burst"], f"{where}: burst", 1) if "burst" in fields else 1
                )
                limit = Rate(name, str(self.plain(fields["rate"])), burst)
            elif kinds[0] == "concurrency":
                limit = Concurrency(
                    name, self.integer(fields["concurrency"], f"{where}: concurrency", 1)
                )
            else:
                if "key" not in fields:
                    raise self.fail(key, f"{where}: mutex needs key: the argument to key on")
                limit = Mutex(
                    name,
                    key=self.string(fields["key"], f"{where}: key"),
                    n=self.integer(fields["mutex"], f"{where}: mutex", 1),
                )
        except RoutingConfigError:
            raise  # named its line already
        except ConfigurationError as exc:
            raise self.fail(value, str(exc)) from exc
        return LimitRule(limit, tasks, line=line_of(key))

    def task_patterns(self, node: yaml.Node, where: str) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.fail(node, f"{where}: tasks must be a list of task names or globs")
        return tuple(self.string(item, f"{where}: a task") for item in node.value)

    def events(self, node: yaml.Node) -> EventHistory | None:
        history = None
        for _key, value in self.mapping(node, "events", EVENTS_KEYS):
            history = self.history(value)
        return history

    def history(self, node: yaml.Node) -> EventHistory:
        what = "events: history"
        fields: dict[str, Any] = {}
        for key, value in self.mapping(node, what, HISTORY_KEYS):
            if key.value == "max_age":
                age = str(self.plain(value))
                if not MAX_AGE.fullmatch(age):
                    raise self.fail(
                        value,
                        f"{what}: max_age {age!r} is not a number followed by one of Y, M, D, "
                        "h, m, s (RabbitMQ's syntax, e.g. 24h or 7D)",
                    )
                fields["max_age"] = age
            else:
                fields["max_bytes"] = self.byte_size(value, f"{what}: max_bytes")
        if not fields:
            raise self.fail(
                node,
                f"{what} needs max_age and/or max_bytes: a stream without a bound keeps every "
                "event until the disk is full",
            )
        return EventHistory(**fields, line=line_of(node))

    def byte_size(self, node: yaml.Node, what: str) -> int:
        text = str(self.plain(node)).strip()
        match = BYTES.fullmatch(text)
        if match is None or match.group(2) not in BYTE_UNITS or int(match.group(1)) < 1:
            units = ", ".join(unit for unit in BYTE_UNITS if unit)
            raise self.fail(node, f"{what} {text!r} is not a positive size ({units})")
        return int(match.group(1)) * BYTE_UNITS[match.group(2)]

    def route(self, key: yaml.ScalarNode, value: yaml.Node) -> TaskRoute:
        routing_key = self.string(value, f"routing key of task {key.value!r}")
        if problem := validate_routing_key(routing_key):
            raise self.fail(value, problem)
        return TaskRoute(key.value, routing_key, line=line_of(key))

    def queue(self, key: yaml.ScalarNode, value: yaml.Node) -> QueueSpec:
        name = key.value
        if problem := _check_name(name, "queue name"):
            raise self.fail(key, problem)
        if name.endswith(".dead"):
            raise self.fail(
                key,
                f"queue name {name!r} ends with '.dead', which rabbitq "
                "reserves for dead-letter queues",
            )
        where = f"queue {name!r}"
        fields: dict[str, Any] = {}
        readers: dict[str, Callable[[yaml.Node], Any]] = {
            "type": lambda n: self.choice(n, f"{where}: type", QUEUE_TYPES),
            "bindings": lambda n: self.bindings(n, where),
            "max_length": lambda n: self.integer(n, f"{where}: max_length", 1),
            "max_length_bytes": lambda n: self.integer(n, f"{where}: max_length_bytes", 1),
            "overflow": lambda n: self.choice(n, f"{where}: overflow", OVERFLOWS),
            "message_ttl": lambda n: self.integer(n, f"{where}: message_ttl", 0),
            "max_priority": lambda n: self.integer(n, f"{where}: max_priority", 1, 255),
            "delivery_limit": lambda n: self.integer(
                n, f"{where}: delivery_limit", 1, UNREACHABLE_DELIVERY_LIMIT
            ),
            "dead_letters": lambda n: self.dead_letter_bounds(n, where),
        }
        nodes: dict[str, yaml.Node] = {}
        for field_key, field_value in self.mapping(value, where, QUEUE_KEYS):
            fields[field_key.value] = readers[field_key.value](field_value)
            nodes[field_key.value] = field_key
        if fields.get("type", "classic") == "classic" and "delivery_limit" in fields:
            raise self.fail(
                nodes["delivery_limit"],
                f"{where}: delivery_limit needs type: quorum (on classic queues the worker "
                "counts redeliveries itself)",
            )
        if fields.get("type") == "quorum":
            if "max_priority" in fields:
                raise self.fail(
                    nodes["max_priority"], f"{where}: quorum queues do not support max_priority"
                )
            if fields.get("overflow") == "reject-publish-dlx":
                raise self.fail(
                    nodes["overflow"],
                    f"{where}: quorum queues do not support overflow reject-publish-dlx",
                )
        return QueueSpec(
            name=name,
            type=fields.get("type", "classic"),
            bindings=tuple(fields.get("bindings", ())),
            max_length=fields.get("max_length"),
            max_length_bytes=fields.get("max_length_bytes"),
            overflow=fields.get("overflow"),
            message_ttl_ms=fields.get("message_ttl"),
            max_priority=fields.get("max_priority"),
            delivery_limit=fields.get("delivery_limit"),
            dead_letter_bounds=fields.get("dead_letters"),
            line=line_of(key),
        )

    def dead_letter_bounds(self, node: yaml.Node, where: str) -> DeadLetterBounds:
        what = f"{where}: dead_letters"
        values: dict[str, int] = {}
        for key, value in self.mapping(node, what, DEAD_LETTER_KEYS):
            values[key.value] = self.integer(value, f"{what}: {key.value}", 1)
        if not values:
            raise self.fail(
                node,
                f"{what} must set max_length and/or message_ttl (without them dead letters "
                "are kept until replayed or purged; leave dead_letters out for that)",
            )
        return DeadLetterBounds(
            max_length=values.get("max_length"), message_ttl_ms=values.get("message_ttl")
        )

    def bindings(self, node: yaml.Node, where: str) -> list[str]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.fail(node, f"{where}: bindings must be a non-empty list of patterns")
        patterns = []
        for item in node.value:
            pattern = self.string(item, f"{where}: binding")
            if problem := validate_topic_pattern(pattern):
                raise self.fail(item, f"{where}: {problem}")
            patterns.append(pattern)
        return patterns
