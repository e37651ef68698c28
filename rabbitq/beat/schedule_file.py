"""Schedule files: operator-owned YAML -> periodic entries, validated strictly, errors with lines.

    timezone: Europe/Paris          # default time zone of cron entries (default UTC)
    catch_up: once                  # default catch-up policy: once | all | skip
    grace: 60s                      # default lateness after which a tick counts as missed
    entries:
      nightly-report:
        task: shop.reports.build    # a task name (it need not be imported by the beat)
        cron: "0 3 * * *"           # 5 fields, or 6 with seconds first, or @daily and friends
        timezone: Europe/London     # overrides the default above
        args: [eu]
        kwargs: {full: true}
        catch_up: all
        options: {queue: reports, priority: 5, expires: 3600}
      heartbeat:
        task: shop.health.ping
        every: 30s                  # or a number of seconds; 90s, 5m, 1h30m, 1d, 250ms

Pure: reads text, builds ``PeriodicEntry`` objects; nothing is sent.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING, Any, cast

import yaml

from rabbitq.beat.schedules import (
    CATCH_UP_POLICIES,
    DEFAULT_GRACE,
    CatchUp,
    Crontab,
    Every,
    PeriodicEntry,
    Schedule,
    parse_duration,
    time_zone,
)
from rabbitq.canvas import Signature
from rabbitq.errors import ScheduleConfigError
from rabbitq.yaml_file import NodeReader, compose, line_of, read_text, shown

if TYPE_CHECKING:
    from rabbitq.app import App

TOP_LEVEL_KEYS = ("timezone", "catch_up", "grace", "entries")
ENTRY_KEYS = (
    "task", "every", "cron", "timezone", "args", "kwargs", "catch_up", "grace", "options",
)  # fmt: skip
# The apply_async options that make sense on a periodic task (countdown/eta do not).
ENTRY_OPTIONS = (
    "queue", "routing_key", "priority", "expires", "serializer", "time_limit", "soft_time_limit",
    "ignore_result", "headers",
)  # fmt: skip


def load_schedule(path: str | os.PathLike[str], app: App | None = None) -> list[PeriodicEntry]:
    text, source = read_text(path, ScheduleConfigError)
    return parse_schedule(text, source, app)


def parse_schedule(
    text: str, source: str = "<schedule>", app: App | None = None
) -> list[PeriodicEntry]:
    root = compose(text, source, ScheduleConfigError)
    if root is None:
        return []
    return _Parser(source, app).entries(root)


class _Parser(NodeReader):
    def __init__(self, source: str, app: App | None) -> None:
        super().__init__(source, ScheduleConfigError)
        self.app = app
        self.timezone: dt.tzinfo = dt.UTC
        self.catch_up: CatchUp = "once"
        self.grace = DEFAULT_GRACE

    def entries(self, root: yaml.Node) -> list[PeriodicEntry]:
        entries_node: yaml.Node | None = None
        for key, value in self.mapping(root, "the schedule file", TOP_LEVEL_KEYS):
            if key.value == "timezone":
                self.timezone = self.zone(value, "timezone")
            elif key.value == "catch_up":
                self.catch_up = self.policy(value, "catch_up")
            elif key.value == "grace":
                self.grace = self.duration(value, "grace")
            else:
                entries_node = value
        if entries_node is None:
            raise self.fail(root, "the schedule file has no 'entries' mapping")
        return [self.entry(k, v) for k, v in self.mapping(entries_node, "entries", None)]

    def entry(self, key: yaml.ScalarNode, node: yaml.Node) -> PeriodicEntry:
        name = key.value
        where = f"entry {name!r}"
        fields = {k.value: (k, v) for k, v in self.mapping(node, where, ENTRY_KEYS)}
        if "task" not in fields:
            raise self.fail(key, f"{where} has no 'task'")
        task = self.string(fields["task"][1], f"{where}: task")
        schedule = self.schedule(key, fields, where)
        args = self.read(fields, "args", where, list, [])
        kwargs = self.read(fields, "kwargs", where, dict, {})
        options = self.options(fields.get("options"), where)
        catch_up = self.catch_up
        if "catch_up" in fields:
            catch_up = self.policy(fields["catch_up"][1], f"{where}: catch_up")
        grace = self.grace
        if "grace" in fields:
            grace = self.duration(fields["grace"][1], f"{where}: grace")
        try:
            entry = PeriodicEntry(
                name,
                Signature(task, args, kwargs, options, app=self.app),
                schedule,
                catch_up=catch_up,
                grace=grace,
                line=line_of(key),
            )
        except ScheduleConfigError as exc:
            raise self.fail(key, exc.problem) from None
        return entry

    def schedule(
        self, key: yaml.ScalarNode, fields: dict[str, tuple[yaml.ScalarNode, yaml.Node]], where: str
    ) -> Schedule:
        if ("every" in fields) == ("cron" in fields):
            raise self.fail(key, f"{where} needs exactly one of 'every' or 'cron'")
        if "every" in fields:
            if "timezone" in fields:
                raise self.fail(fields["timezone"][0], f"{where}: timezone applies to cron only")
            node = fields["every"][1]
            interval = self.duration(node, f"{where}: every")
        else:
            node = fields["cron"][1]
            expression = self.string(node, f"{where}: cron")
            zone = self.zone(fields["timezone"][1], f"{where}: timezone") if "timezone" in fields \
                else self.timezone  # fmt: skip
        try:
            return Every(interval) if "every" in fields else Crontab(expression, zone)
        except ScheduleConfigError as exc:
            raise self.fail(node, f"{where}: {exc.problem}") from None

    def read(
        self,
        fields: dict[str, tuple[yaml.ScalarNode, yaml.Node]],
        name: str,
        where: str,
        kind: type,
        default: Any,
    ) -> Any:
        if name not in fields:
            return default
        node = fields[name][1]
        expected = yaml.SequenceNode if kind is list else yaml.MappingNode
        if not isinstance(node, expected):
            noun = "a list" if kind is list else "a mapping"
            raise self.fail(node, f"{where}: {name} must be {noun}, got {shown(node)}")
        return self.plain(node)

    def options(
        self, field: tuple[yaml.ScalarNode, yaml.Node] | None, where: str
    ) -> dict[str, Any]:
        if field is None:
            return {}
        options: dict[str, Any] = {}
        for key, value in self.mapping(field[1], f"{where}: options", ENTRY_OPTIONS):
            options[key.value] = self.plain(value)
        return options

    def zone(self, node: yaml.Node, what: str) -> dt.tzinfo:
        name = self.string(node, what)
        try:
            return time_zone(name)
        except ScheduleConfigError as exc:
            raise self.fail(node, f"{what}: {exc.problem}") from None

    def policy(self, node: yaml.Node, what: str) -> CatchUp:
        return cast(CatchUp, self.choice(node, what, CATCH_UP_POLICIES))

    def duration(self, node: yaml.Node, what: str) -> dt.timedelta:
        seconds = self.number(node, what)
        if seconds is not None:
            return dt.timedelta(seconds=seconds)
        text = self.string(node, what)
        try:
            return parse_duration(text)
        except ScheduleConfigError as exc:
            raise self.fail(node, f"{what}: {exc.problem}") from None
