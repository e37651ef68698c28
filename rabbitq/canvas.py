"""The canvas: signatures and the workflows built from them (chain, group, chord, map...).

Names and meanings follow Celery's, and so does the shape a signature takes on the wire::

    {"task": "shop.add", "args": [2], "kwargs": {}, "options": {"countdown": 5},
     "subtask_type": None, "immutable": False}

``subtask_type`` is ``"chain"``, ``"group"`` or ``"chord"`` for workflows; their parts sit in
``kwargs`` (``tasks``; ``header`` and ``body``).

Nothing here talks to the broker. Applying a workflow *compiles* it into the task messages
to publish now (``compile.py``, which says how chains, groups and chords travel); everything
that happens later rides inside those messages, so no process has to remember the workflow.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, Self

from rabbitq.errors import ConfigurationError
from rabbitq.results.handles import AsyncResult, GroupResult, HasBackend


class App(HasBackend, Protocol):
    """What a signature needs of the app to be applied or called (a protocol: signatures sit
    below the app and its tasks, which make them)."""

    def apply_signature(self, sig: Signature) -> ResultHandle: ...

    async def aapply_signature(self, sig: Signature) -> ResultHandle: ...

    def get_task(self, name: str) -> Callable[..., Any]: ...


class Task(Protocol):
    """What a signature reads of a task."""

    @property
    def name(self) -> str: ...

    @property
    def app(self) -> App: ...

    def s(self, *args: Any, **kwargs: Any) -> Signature: ...


# Option keys that are ours, not apply_async's: where a step belongs and what follows it.
CHORD_OPTION = "rabbitq_chord"  # {"id", "index", "size", "body"}: report the result there
CONTINUATION_OPTION = "rabbitq_chain"  # steps to run after this one (a chord body's rest)
CANVAS_OPTIONS = frozenset({"link", "link_error", CHORD_OPTION, CONTINUATION_OPTION})

ResultHandle = AsyncResult | GroupResult


class Signature:
    """A task call to make later: name, arguments and ``apply_async`` options."""

    subtask_type: str | None = None

    def __init__(
        self,
        task: str | Task,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        immutable: bool = False,
        app: App | None = None,
    ) -> None:
        if isinstance(task, str):
            self.task = task
            self.app = app
        else:
            self.task = task.name
            self.app = app or task.app
        self.args = tuple(args or ())
        self.kwargs = dict(kwargs or {})
        self.options: dict[str, Any] = dict(options or {})
        self.immutable = immutable

    def __repr__(self) -> str:
        arguments = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        marker = "si" if self.immutable else "s"
        return f"{self.task}.{marker}({', '.join(arguments)})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        # The app is shared, never copied (it holds connections and locks).
        twin = type(self).__new__(type(self))
        for key, value in self.__dict__.items():
            setattr(twin, key, value if key == "app" else copy.deepcopy(value, memo))
        return twin

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signature):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    # -- building ---------------------------------------------------------------------------

    def set(self, **options: Any) -> Signature:
        """Set ``apply_async`` options in place (as Celery); returns the signature."""
        self.options.update(options)
        return self

    def clone(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Signature:
        """A copy with ``args`` prepended and ``kwargs``/``options`` merged (unless immutable)."""
        twin = self.copy()
        if not self.immutable:
            twin.args = tuple(args) + self.args
            twin.kwargs = {**self.kwargs, **(kwargs or {})}
        twin.options.update(options)
        return twin

    def copy(self) -> Signature:
        """A copy whose options and kwargs can change without touching this one.

        Cheaper than ``deepcopy`` (applying a group of thousands copies each member):
        compiling only ever replaces option values, never mutates them in place.
        """
        twin = copy.copy(self)
        twin.options = dict(self.options)
        twin.kwargs = dict(self.kwargs)
        return twin

    def link(self, callback: Signature) -> Signature:
        """Run ``callback`` with this task's result once it succeeded."""
        self.options.setdefault("link", []).append(callback)
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Run ``errback`` with this task's id if it fails (the error is in its request)."""
        self.options.setdefault("link_error", []).append(errback)
        return errback

    def on_error(self, errback: Signature) -> Signature:
        """``link_error``, returning this signature (Celery's ``sig.on_error(e).delay()``)."""
        self.link_error(errback)
        return self

    def __or__(self, other: Signature) -> Chain:
        return Chain(self, other)

    def __invert__(self) -> Any:
        """``~sig``: apply it and wait for the result (Celery's shell shortcut)."""
        return self.apply_async().get()

    # -- freezing and identity --------------------------------------------------------------

    @property
    def id(self) -> str | None:
        task_id: str | None = self.options.get("task_id")
        return task_id

    def freeze(self) -> ResultHandle:
        """Fix the task id now (so the result handle is known before publishing)."""
        return AsyncResult(_frozen_id(self.options), self.app, self.task)

    # -- wire form --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "args": list(self.args),
            "kwargs": _plain(self.kwargs),
            "options": _plain(self.options),
            "subtask_type": self.subtask_type,
            "immutable": self.immutable,
        }

    # -- applying ---------------------------------------------------------------------------

    def delay(self, *args: Any, **kwargs: Any) -> ResultHandle:
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> ResultHandle:
        """Publish it (with ``args`` prepended, as Celery's partials) and return the handle."""
        app = self._require_app()
        return app.apply_signature(self.clone(args, kwargs, **options))

    async def adelay(self, *args: Any, **kwargs: Any) -> ResultHandle:
        return await self.aapply_async(args, kwargs)

    async def aapply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> ResultHandle:
        app = self._require_app()
        return await app.aapply_signature(self.clone(args, kwargs, **options))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here, in this process (as calling a Celery signature does)."""
        app = self._require_app()
        merged = self.clone(args, kwargs)
        return app.get_task(self.task)(*merged.args, **merged.kwargs)

    def _require_app(self) -> App:
        if self.app is None:
            raise ConfigurationError(
                f"signature {self!r} is not bound to an app; build it with task.s(...) "
                "or pass app= to Signature"
            )
        return self.app

    def bind(self, app: App) -> Signature:
        """Attach ``app`` to this signature and every signature inside it."""
        self.app = app
        return self


class _TaskList(Signature):
    """What chain and group share: a list of signatures, copied, bound and sent as one."""

    tasks: list[Signature]

    def copy(self) -> Self:
        twin = copy.copy(self)
        twin.options = dict(self.options)
        twin.tasks = [task.copy() for task in self.tasks]
        return twin

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["kwargs"] = {"tasks": [task.to_dict() for task in self.tasks]}
        return data

    def bind(self, app: App) -> Self:
        self.app = app
        for task in self.tasks:
            task.bind(app)
        return self


class Chain(_TaskList):
    """``chain(a.s(), b.s(), c.s())`` or ``a.s() | b.s() | c.s()``: each result feeds the next.

    A group followed by another step becomes a chord (the step receives the list of results),
    as in Celery.
    """

    subtask_type = "chain"

    def __init__(
        self, *tasks: Signature | Iterable[Signature], app: App | None = None, **options: Any
    ) -> None:
        steps = _flatten_args(tasks)
        if not steps:
            raise ConfigurationError("a chain needs at least one signature")
        flat: list[Signature] = []
        for step in steps:
            if isinstance(step, Chain) and not step.options:  # a plain chain inside: its steps
                flat.extend(step.tasks)
            elif isinstance(step, Group) and len(step.tasks) == 1 and not step.options:
                # Celery unrolls a group of one: the next step gets its result, not a list.
                flat.append(step.tasks[0])
            else:
                flat.append(step)
        self.tasks = _upgrade_groups(flat)
        super().__init__("celery.chain", (), {}, options, app=app or _first_app(self.tasks))

    def __repr__(self) -> str:
        return " | ".join(repr(step) for step in self.tasks)

    def __or__(self, other: Signature) -> Chain:
        return Chain(*self.tasks, other, app=self.app)

    def __call__(self, *args: Any, **kwargs: Any) -> ResultHandle:
        """``chain(...)()`` applies it (as Celery): ``args`` are prepended to the first step."""
        return self.apply_async(args, kwargs)

    def clone(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Chain:
        twin = self.copy()
        twin.tasks[0] = twin.tasks[0].clone(args, kwargs)
        twin.options.update(options)
        return twin

    def freeze(self) -> ResultHandle:
        """The last step's handle; ``.parent`` leads back through the steps, as in Celery.

        A ``task_id`` given to the chain is its last step's (Celery 5.4's "a chain inherits
        the task id of the last task")."""
        last = self.tasks[-1]
        if "task_id" in self.options and type(last) is Signature:
            last.options.setdefault("task_id", self.options["task_id"])
        handle: ResultHandle | None = None
        for step in self.tasks:
            previous, handle = handle, step.freeze()
            if previous is not None:
                _oldest(handle).parent = previous
        assert handle is not None
        return handle

    @property
    def id(self) -> str | None:
        return self.tasks[-1].id


class Group(_TaskList):
    """``group(a.s(1), a.s(2), ...)``: run together; the result is the list of their results."""

    subtask_type = "group"

    def __init__(
        self, *tasks: Signature | Iterable[Signature], app: App | None = None, **options: Any
    ) -> None:
        self.tasks = _flatten_args(tasks)
        super().__init__("celery.group", (), {}, options, app=app or _first_app(self.tasks))

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"

    def __or__(self, other: Signature) -> Chain:
        return Chain(self, other, app=self.app)

    def __len__(self) -> int:
        return len(self.tasks)

    def link(self, callback: Signature) -> Signature:
        """Refused: Celery links it to the first member only, so it would run before the
        group is done, with that member's result; a chord is what calls back after all."""
        raise ConfigurationError(
            f"group(...).link({callback!r}) is refused: the callback would run after the "
            "group's first member, not after the group (as in Celery, whose guide warns of "
            "it); use a chord, chord(group, callback) or group | callback"
        )

    def link_error(self, errback: Signature) -> Signature:
        """Every member's errback, so it runs once per failing member (as in Celery)."""
        for member in self.tasks:
            member.link_error(errback)
        return errback

    def __call__(self, *args: Any, **options: Any) -> GroupResult:
        """``group(...)()`` applies it (as Celery): ``args`` are prepended to every member."""
        return self.apply_async(args, **options)

    def apply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> GroupResult:
        result = super().apply_async(args, kwargs, **options)
        assert isinstance(result, GroupResult)
        return result

    def skew(self, start: float = 1.0, stop: float | None = None, step: float = 1.0) -> Group:
        """Give the members countdowns ``start``, ``start + step``... (at most ``stop``),
        as Celery's ``group.skew``; in place, returns the group."""
        countdown = start
        for member in self.tasks:
            member.set(countdown=countdown)
            if stop is None or countdown + step <= stop:
                countdown += step
        return self

    def clone(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Group:
        twin = copy.copy(self)
        twin.options = {**self.options, **options}
        twin.tasks = [member.clone(args, kwargs) for member in self.tasks]
        return twin

    def freeze(self) -> GroupResult:
        group_id = _frozen_id(self.options)
        results = [member.freeze() for member in self.tasks]
        return GroupResult(group_id, results, self.app)


class Chord(Signature):
    """``chord(header, body)``: run the header group, then ``body`` with all their results.

    No result backend is involved: see ``chords.py`` for the coordinator.
    """

    subtask_type = "chord"

    def __init__(
        self,
        header: Group | Iterable[Signature],
        body: Signature | None = None,
        app: App | None = None,
        **options: Any,
    ) -> None:
        self.header = header if isinstance(header, Group) else Group(*header)
        self.body = body
        super().__init__(
            "celery.chord",
            (),
            {},
            options,
            app=app or self.header.app or (body.app if body else None),
        )

    def __call__(self, body: Signature | None = None, **options: Any) -> Any:
        """``chord(header)(body)`` publishes, as in Celery."""
        target = self if body is None else Chord(self.header, body, app=self.app, **self.options)
        return target.apply_async(**options)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def clone(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Chord:
        twin = self.copy()
        twin.header = self.header.clone(args, kwargs)
        twin.options.update(options)
        return twin

    def copy(self) -> Chord:
        twin = copy.copy(self)
        twin.options = dict(self.options)
        twin.header = self.header.copy()
        twin.body = self.body.copy() if self.body is not None else None
        return twin

    def freeze(self) -> ResultHandle:
        """The body's handle, whose ``.parent`` is the header's ``GroupResult`` (as Celery)."""
        _frozen_id(self.options)  # the chord's own id
        header = self.header.freeze()
        body = self._require_body().freeze()
        _oldest(body).parent = header
        return body

    @property
    def id(self) -> str | None:
        return self.body.id if self.body is not None else None

    def _require_body(self) -> Signature:
        if self.body is None:
            raise ConfigurationError("a chord needs a body: chord(header, body)")
        return self.body

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["kwargs"] = {
            "header": self.header.to_dict(),
            "body": self.body.to_dict() if self.body is not None else None,
        }
        return data

    def bind(self, app: App) -> Chord:
        self.app = app
        self.header.bind(app)
        if self.body is not None:
            self.body.bind(app)
        return self


# Celery's lower-case names.
chain = Chain
group = Group
chord = Chord


def signature(
    varies: str | Signature | Mapping[str, Any],
    args: Sequence[Any] | App | None = None,
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    app: App | None = None,
    immutable: bool = False,
    **more_options: Any,
) -> Signature:
    """Celery's ``signature``: by task name, ``signature("tasks.add", args=(2, 2),
    countdown=10, app=app)``; or from the dict form a signature travels in
    (``signature(data, app)``), or the signature itself.

    A signature made by name needs ``app=`` to be applied (Celery falls back on a "current
    app"; rabbitq has none). ``task.s(...)`` and ``task.signature(...)`` are bound already.
    """
    if isinstance(varies, str):
        if args is not None and not isinstance(args, Sequence):
            raise ConfigurationError("signature(name, args, ...): pass the app as app=")
        merged = {**(options or {}), **more_options}
        return Signature(varies, args, kwargs, merged, immutable=immutable, app=app)
    if args is not None and not isinstance(args, Sequence):
        app = args  # signature(data, app), the app second
    return from_dict(varies, app)


def from_dict(value: Signature | Mapping[str, Any], app: App | None = None) -> Signature:
    """A signature from its dict form (as it travels in messages), or the signature itself."""
    if isinstance(value, Signature):
        return value
    if not isinstance(value, Mapping) or not isinstance(value.get("task"), str):
        raise ConfigurationError(f"not a signature: {value!r}")
    kind = value.get("subtask_type")
    options = dict(value.get("options") or {})
    kwargs = value.get("kwargs") or {}
    if kind == "chain":
        return Chain(*[signature(t, app) for t in kwargs.get("tasks", ())], app=app, **options)
    if kind == "group":
        return Group(*[signature(t, app) for t in kwargs.get("tasks", ())], app=app, **options)
    if kind == "chord":
        header = (
            signature(kwargs["header"], app)
            if isinstance(kwargs.get("header"), Mapping)
            else Group(*[signature(t, app) for t in kwargs.get("header", ())], app=app)
        )
        body = signature(kwargs["body"], app) if kwargs.get("body") else None
        if not isinstance(header, Group):
            header = Group(header, app=app)
        return Chord(header, body, app=app, **options)
    for key in ("link", "link_error"):
        if key in options:
            callbacks = options[key]
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            options[key] = [signature(c, app) for c in callbacks]
    return Signature(
        value["task"],
        value.get("args") or (),
        kwargs,
        options,
        immutable=bool(value.get("immutable")),
        app=app,
    )


# -- map, starmap, chunks (run by the built-in tasks celery.map / celery.starmap) ---------------


def _upgrade_groups(steps: list[Signature]) -> list[Signature]:
    upgraded: list[Signature] = []
    index = 0
    while index < len(steps):
        step = steps[index]
        if isinstance(step, Group) and index + 1 < len(steps):
            upgraded.append(Chord(step, steps[index + 1], app=step.app))
            index += 2
            continue
        upgraded.append(step)
        index += 1
    return upgraded


def _flatten_args(tasks: tuple[Signature | Iterable[Signature], ...]) -> list[Signature]:
    if len(tasks) == 1 and not isinstance(tasks[0], Signature):
        return list(tasks[0])
    flat: list[Signature] = []
    for task in tasks:
        if not isinstance(task, Signature):
            raise ConfigurationError(f"expected a signature (task.s(...)), got {task!r}")
        flat.append(task)
    return flat


def _frozen_id(options: dict[str, Any]) -> str:
    """The ``task_id`` option, set to a new id the first time a signature is frozen."""
    if "task_id" not in options:
        options["task_id"] = str(uuid.uuid4())
    task_id: str = options["task_id"]
    return task_id


def _oldest(handle: ResultHandle) -> ResultHandle:
    """The first handle up ``handle``'s ``.parent`` line (where an earlier step attaches)."""
    while handle.parent is not None:
        handle = handle.parent
    return handle


def _first_app(tasks: Sequence[Signature]) -> App | None:
    return next((t.app for t in tasks if t.app is not None), None)


def _plain(value: Any) -> Any:
    """Signatures inside options or kwargs, turned into their dict form."""
    if isinstance(value, Signature):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def signature_dicts(value: Any) -> list[dict[str, Any]] | None:
    """``link=``/``link_error=`` values (one signature, or a list) in their dict form."""
    if value is None:
        return None
    items = value if isinstance(value, list | tuple) else [value]
    return [item.to_dict() if isinstance(item, Signature) else dict(item) for item in items]
