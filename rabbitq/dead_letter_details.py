"""What ``rabbitq dead show`` and the dashboard show of one dead letter, and which dead letters a
replay takes (pure: both read a ``DeadLetter`` the same way, so they never disagree).
"""

from __future__ import annotations

from dataclasses import dataclass

from rabbitq.dead_letters import DeadLetterSummary
from rabbitq.errors import RabbitqError
from rabbitq.message import Envelope, decode_task

TRACEBACK_HEADER = "rabbitq_traceback"
BODY_PREVIEW = 500  # bytes of an undecodable body worth showing


@dataclass(frozen=True)
class DeadLetterDetails:
    """One dead letter laid out for a reader: its headers (the traceback apart), its
    arguments when the body decodes, else a preview of the body and why it does not."""

    summary: DeadLetterSummary
    headers: tuple[tuple[str, str], ...]  # sorted by name, without the traceback
    args: str | None  # repr() of the positional arguments; None when the body does not decode
    kwargs: str | None
    body_problem: str | None  # "b'...' (why it does not decode)", when it does not
    traceback: str | None

    @classmethod
    def of(cls, envelope: Envelope) -> DeadLetterDetails:
        headers = envelope.headers or {}
        args = kwargs = body_problem = None
        try:
            message = decode_task(envelope)
            args, kwargs = repr(message.args), repr(message.kwargs)
        except RabbitqError as exc:
            body_problem = f"{envelope.body[:BODY_PREVIEW]!r} ({exc})"
        traceback = headers.get(TRACEBACK_HEADER)
        return cls(
            summary=DeadLetterSummary.of(envelope),
            headers=tuple(
                (key, str(headers[key])) for key in sorted(headers) if key != TRACEBACK_HEADER
            ),
            args=args,
            kwargs=kwargs,
            body_problem=body_problem,
            traceback=None if traceback is None else str(traceback),
        )


@dataclass(frozen=True)
class ReplaySelection:
    """Which dead letters to replay: these ids, this task's, or all (ids and task combine)."""

    ids: frozenset[str] = frozenset()
    task: str | None = None
    all: bool = False

    @property
    def is_empty(self) -> bool:
        return not (self.ids or self.task or self.all)

    @property
    def everything(self) -> bool:
        """Every dead letter: the replay hands nothing back, so it needs no browsing."""
        return self.all and not self.ids and not self.task

    def takes(self, summary: DeadLetterSummary) -> bool:
        return (not self.ids or summary.id in self.ids) and (
            self.task is None or summary.task == self.task
        )
