"""``rabbitq status`` as plain text: one screen, sections in the order an operator asks. Pure."""

from __future__ import annotations

import time

from rabbitq.status.limits import describe
from rabbitq.status.snapshot import LimitFigures, Snapshot

NAME = 34


def render_text(snapshot: Snapshot, *, now: float | None = None, show_all: bool = False) -> str:
    now = time.time() if now is None else now
    lines = [f"rabbitq status  {snapshot.broker}  RabbitMQ {snapshot.broker_version or '?'}"
             f"  at {snapshot.taken_at}"]  # fmt: skip
    for problem in snapshot.problems:
        lines.append(f"! {problem}")

    lines += ["", "Queues"]
    lines.append(
        f"  {'name':<{NAME}} {'type':<7} {'ready':>8} {'unacked':>8} {'consumers':>9} "
        f"{'in/s':>8} {'out/s':>8}"
    )
    shown = [q for q in snapshot.queues if show_all or q.role in ("task", "chords")]
    for q in shown:
        lines.append(
            f"  {q.name:<{NAME}} {q.type:<7} {q.ready:>8} {q.unacked:>8} {q.consumers:>9} "
            f"{q.publish_rate:>8.1f} {q.deliver_rate:>8.1f}"
        )
    if not shown:
        lines.append("  (no task queues)")

    online = [w for w in snapshot.workers if w.online]
    lines += ["", f"Workers ({len(online)} online)"]
    lines.append(
        f"  {'node':<{NAME}} {'pid':>7} {'slots':>5} {'active':>6} {'processed':>9} "
        f"{'seen':>6}  queues"
    )
    for w in snapshot.workers:
        slots = "" if w.concurrency is None else str(w.concurrency)
        seen = f"{max(0.0, now - w.last_seen):.0f}s"
        state = "" if w.online else "  (offline)"
        lines.append(
            f"  {w.hostname:<{NAME}} {w.pid or '':>7} {slots:>5} {w.active:>6} "
            f"{w.processed:>9} {seen:>6}  {', '.join(w.queues)}{state}"
        )
    if not snapshot.workers:
        lines.append("  (no worker heard from)")

    lines += ["", f"Dead letters ({snapshot.dead_letters})"]
    for d in snapshot.dead_queues:
        if not (d.messages or show_all):
            continue
        newest = ""
        if d.newest is not None:
            newest = f"newest: {d.newest.reason} {d.newest.task} at {d.newest.dead_at}"
            if d.newest.exception:
                newest += f" ({d.newest.exception[:60]})"
        lines.append(f"  {d.name:<{NAME}} {d.messages:>8}  {newest}")
    if not snapshot.dead_letters and not show_all:
        lines.append("  (none)")

    occupied = [level for level in snapshot.delay_levels if level.messages]
    lines += ["", f"Delayed ({snapshot.delayed} in {len(occupied)} level(s))"]
    for level in occupied:
        lines.append(f"  level {level.level:>2} ({_wait(level.wait_ms):>9})  {level.messages:>8}")

    chords = snapshot.chords
    if chords is not None:
        in_flight = "?" if chords.in_flight is None else str(chords.in_flight)
        by = f" coordinated by {chords.coordinator}" if chords.coordinator else ""
        lines += [
            "",
            f"Chords: {in_flight} in flight{by}; parts held {chords.parts_held}, "
            f"waiting {chords.parts_waiting}; dead {chords.dead}",
        ]

    limits = [limit for limit in snapshot.limits if show_all or _in_use(limit)]
    if limits or snapshot.limits_returned:
        lines += ["", *_limit_lines(limits, snapshot.limits_returned)]

    beat = snapshot.beat
    lines += [""]
    if beat is None:
        lines.append("Beat: none has run")
    else:
        group = f" (group {beat.group})" if beat.group else ""
        if not beat.led:
            lines.append(f"Beat{group}: NO LEADER")
        else:
            since = f" since {beat.leader_since}" if beat.leader_since else ""
            lines.append(f"Beat{group}: led by {beat.leader or '(not yet written)'}{since}")
        for tick in beat.ticks:
            lines.append(f"  {tick.entry:<{NAME}} next {tick.next or '-':<26} {tick.schedule}")
    return "\n".join(lines)


def _in_use(limit: LimitFigures) -> bool:
    """Declared by a worker online, or holding or waiting: the rest are what limits no
    longer in use left behind (shown with ``--all``)."""
    return limit.declared is not None or bool(limit.holders or limit.waiting or limit.taken)


def _limit_lines(limits: list[LimitFigures], returned: int) -> list[str]:
    lines = ["Limits"]
    lines.append(
        f"  {'name':<24} {'kind':<11} {'allows':<16} {'tokens':>7} {'running':>7} "
        f"{'keys':>5} {'waiting':>8} {'taken':>6}"
    )
    for limit in limits:
        lines.append(
            f"  {limit.name:<24} {limit.kind:<11} {describe(limit.declared):<16} "
            f"{_tokens(limit):>7} {_running(limit):>7} "
            f"{limit.keys if limit.kind == 'mutex' else '':>5} {limit.waiting:>8} "
            f"{limit.taken:>6}{_warning(limit)}"
        )
    if returned:
        lines.append(f"  {returned} waiting task(s) back from a long wait")
    return lines


def _tokens(limit: LimitFigures) -> str:
    if limit.tokens is None:
        return ""
    burst = limit.declared.burst if limit.declared is not None else None
    return f"{limit.tokens}/{burst}" if burst else str(limit.tokens)


def _running(limit: LimitFigures) -> str:
    if limit.kind == "rate":
        return ""
    n = limit.declared.n if limit.declared is not None else None
    return f"{limit.holders}/{n}" if limit.kind == "concurrency" and n else str(limit.holders)


def _warning(limit: LimitFigures) -> str:
    # Tokens come only from the refiller: tasks waiting with none refilling wait for ever.
    if limit.refilled is False and (limit.waiting or limit.taken):
        return "  (no refiller: no worker declaring it is running)"
    return ""


def _wait(ms: int) -> str:
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
