"""Every error rabbitq raises, in one tree.

    RabbitqError
    ├── ConfigurationError          bad App options, bad --app path, missing task
    │   ├── ConfigFileError         a YAML file is invalid (names file and line)
    │   │   ├── RoutingConfigError  the routing file
    │   │   └── ScheduleConfigError a periodic-task schedule (file or add_periodic)
    │   └── MissingExtraError       an optional feature without its extra (names it); also
    │                               an ImportError
    ├── BrokerError                 talking to RabbitMQ failed
    │   ├── BrokerConnectionError   could not connect, or the connection was lost for good
    │   │   └── BrokerTlsError      the TLS handshake failed (an untrusted certificate, a
    │   │                           client certificate the broker refused)
    │   ├── TopologyConflictError   a queue exists with different arguments
    │   ├── QueueNotFoundError      a queue the caller named does not exist
    │   └── EventHistoryMissingError the broker keeps no event history (rabbitq events)
    ├── PublishError                a message was not accepted by the broker
    │   ├── UnroutableError         no queue is bound for the routing key (mandatory return)
    │   ├── MessageTooLargeError    a body over App(max_message_size=), refused before sending
    │   ├── PublishNackedError      the broker refused to store the message (nack)
    │   ├── PublishTimeoutError     no confirm in time (broker down, or connection.blocked)
    │   └── PublishConnectionError  the connection failed before the confirm (retry=False,
    │                               or a retry_policy run out)
    ├── MessageError                an incoming message cannot be run
    │   ├── MessageDecodeError      body or headers are not a valid task message
    │   │   ├── BodyTooLargeError   a body over the worker's max_message_size (not decoded)
    │   │   └── BodyTooDeepError    a body nested deeper than MAX_NESTING (not decoded)
    │   ├── BadSignatureError       signing is on and the signature is missing or wrong
    │   ├── UnknownTaskError        the message names a task this worker does not know
    │   └── UnsupportedMessageError a Celery feature rabbitq workers cannot serve (chords)
    ├── TaskArgumentsError          arguments do not fit the task's signature
    ├── ResultError                 a task's result cannot be had
    │   ├── ResultsDisabledError    no result backend, or the task ignores its result
    │   ├── ResultTimeoutError      ``get(timeout=)`` passed before the result arrived
    │   ├── ResultEncodeError       the task's return value cannot be serialized
    │   ├── ResultBackendError      the result store (Redis) is unreachable or too slow
    │   └── GetInsideTaskError      ``get()`` inside a running task (it can deadlock the worker)
    ├── NotSupportedError           a Celery API rabbitq does not offer (says what instead)
    ├── TaskError                   the task failed remotely (type, message, traceback)
    ├── FollowupError               a task succeeded but what follows it could not be sent
    ├── SoftTimeLimitExceeded       raised inside a task at its soft time limit
    ├── TimeLimitExceeded           a task ran past its hard time limit
    ├── TaskRevokedError            a revoked task: its REVOKED result, what ``get()`` raises
    │   └── Terminated              raised inside a task revoked with ``terminate=True``
    ├── ControlError                a remote-control request was not sent, or none answered
    ├── Retry                       raised by ``task.retry()``: run the task again later
    ├── Deferred                    raised by an ``admit`` hook: the delivery was settled elsewhere
    └── SkipTask                    raised by a ``before_process`` hook: ack, do not run

Catch ``RabbitqError`` to catch everything rabbitq raises on purpose.
"""

from __future__ import annotations


class RabbitqError(Exception):
    """Base class of every error rabbitq raises on purpose."""


class ConfigurationError(RabbitqError):
    """The application, a CLI option or an environment variable is misconfigured."""


class ConfigFileError(ConfigurationError):
    """A configuration file is invalid. ``str()`` reads ``file:line: problem``."""

    def __init__(self, problem: str, *, source: str | None = None, line: int | None = None):
        self.problem = problem
        self.source = source
        self.line = line
        if source is None:
            super().__init__(problem)
        else:
            where = f"{source}:{line}" if line is not None else source
            super().__init__(f"{where}: {problem}")


class RoutingConfigError(ConfigFileError):
    """A routing file is invalid."""


class ScheduleConfigError(ConfigFileError):
    """A periodic-task schedule is invalid: a YAML file (with its line) or an ``add_periodic``
    call."""


class MissingExtraError(ConfigurationError, ImportError):
    """An optional feature was asked for without the packages of its extra. ``str()`` names
    the missing packages and reads ``pip install 'rabbitq[<extra>]'``.

    Also an ``ImportError`` (``name`` is the first missing module), so the usual
    ``try: import ... except ImportError`` around an optional feature keeps working.
    """

    def __init__(
        self, feature: str, extra: str, missing: list[str], *, module: str, hint: str = ""
    ) -> None:
        self.feature = feature
        self.extra = extra
        self.missing = missing
        verb = "is" if len(missing) == 1 else "are"
        message = (
            f"{feature} needs {' and '.join(missing)}, which {verb} not installed: "
            f"pip install 'rabbitq[{extra}]'"
        )
        super().__init__(f"{message} ({hint})" if hint else message, name=module)


class BrokerError(RabbitqError):
    """Talking to RabbitMQ failed."""


class BrokerConnectionError(BrokerError):
    """The broker could not be reached, or the connection was lost and not regained."""


class TopologyConflictError(BrokerError):
    """A queue or exchange already exists with arguments that differ from ours."""


class QueueNotFoundError(BrokerError):
    """A queue the caller named (``rabbitq dead``, the dashboard) does not exist."""


class EventHistoryMissingError(BrokerError):
    """``rabbitq events`` found no history stream: the routing file asks for none."""


class PublishError(RabbitqError):
    """The broker did not accept a message; the task was NOT enqueued."""


class UnroutableError(PublishError):
    """No queue is bound for the routing key: the broker returned the message."""

    def __init__(self, routing_key: str, exchange: str = "rabbitq"):
        self.routing_key = routing_key
        self.exchange = exchange
        super().__init__(
            f"no queue is bound to exchange {exchange!r} for routing key {routing_key!r}; "
            "the message was returned and the task was not enqueued "
            "(start a worker for the queue, or declare it with `rabbitq topology apply`)"
        )


class MessageTooLargeError(PublishError):
    """A message's body is over the App's ``max_message_size``: nothing of its batch was sent.

    Checked before publishing because a broker over its own ``max_message_size`` closes the
    channel instead of answering, and does not advertise the limit to clients.
    """

    def __init__(self, task_id: str, task_name: str, size: int, limit: int):
        self.task_id = task_id
        self.task_name = task_name
        self.size = size
        self.limit = limit
        super().__init__(
            f"message {task_id} ({task_name}) is {size} bytes, over max_message_size={limit} "
            "bytes; nothing was published (pass large data by reference, e.g. a storage key, "
            "or raise max_message_size on the App and on the broker together)"
        )


class PublishNackedError(PublishError):
    """The broker nacked the message: it was not stored."""


class PublishTimeoutError(PublishError):
    """No confirm arrived in time: the broker is unreachable or has blocked the connection."""


class PublishConnectionError(PublishError):
    """The connection could not be made, or was lost before the confirm, and the publish was
    not to be retried (``retry=False``, or its ``retry_policy`` ran out). A message sent before
    the loss may or may not be in the broker; publishing it again keeps its task id."""


class MessageError(RabbitqError):
    """An incoming message cannot be run. The worker dead-letters it with the reason."""

    reason = "invalid-message"


class MessageDecodeError(MessageError):
    """The body or headers are not a valid task message."""

    reason = "undecodable"


class BodyTooLargeError(MessageDecodeError):
    """An incoming body is over the worker App's ``max_message_size``; it was not decoded."""

    reason = "too-large"


class BodyTooDeepError(MessageDecodeError):
    """An incoming body nests lists and maps deeper than ``message_size.MAX_NESTING``; it was
    refused from a scan of its bytes, before being decoded."""

    reason = "too-deep"


class BadSignatureError(MessageError):
    """The App signs messages (``signing_key``) and this one carries no signature, one made
    with a key the App does not hold, or one that does not match its body and headers."""

    reason = "bad-signature"


class UnsupportedMessageError(MessageError):
    """A valid message asks for something rabbitq workers do not do (a Celery chord member)."""

    reason = "unsupported"


class UnknownTaskError(MessageError):
    """The message names a task that is not registered in this worker's app."""

    reason = "unknown-task"

    def __init__(self, task_name: str):
        self.task_name = task_name
        super().__init__(f"no task named {task_name!r} is registered in this app")


class TaskArgumentsError(RabbitqError):
    """The arguments do not fit the task's signature (raised before the task runs)."""

    reason = "bad-arguments"


class ResultError(RabbitqError):
    """A task's result cannot be had."""


class ResultsDisabledError(ResultError):
    """``get()`` on a task whose result is not stored (no backend, or ``ignore_result``)."""


class ResultTimeoutError(ResultError, TimeoutError):
    """``get(timeout=...)`` passed before the task finished."""


class ResultEncodeError(ResultError):
    """The task returned a value its result serializer cannot encode: stored as a FAILURE."""


class ResultBackendError(ResultError):
    """The result backend did not answer: Redis is down, unreachable, or slower than its
    socket timeout."""


class GetInsideTaskError(ResultError, RuntimeError):
    """``AsyncResult.get()`` was called inside a running task.

    A task that blocks on another task's result holds its worker slot while it waits; when
    every slot waits, the tasks they wait for never run. Celery refuses the same call (with a
    ``RuntimeError``, which this also is). ``get(disable_sync_subtasks=False)`` opts out.
    """


class NotSupportedError(RabbitqError, NotImplementedError):
    """A Celery API that rabbitq does not offer; the message says why and what to use instead.

    A ``NotImplementedError`` too, which is what Celery raises where a backend lacks it.
    """


class TaskError(RabbitqError):
    """A task failed in a worker; re-raised at the caller by ``AsyncResult.get()``.

    The remote exception is described, never unpickled: ``exc_type`` (its class name),
    ``exc_module``, ``exc_message`` and the worker's ``traceback`` text.
    """

    def __init__(
        self,
        exc_type: str,
        exc_message: str,
        traceback: str | None = None,
        *,
        exc_module: str | None = None,
        task_id: str | None = None,
    ) -> None:
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.exc_module = exc_module
        self.traceback = traceback
        self.task_id = task_id
        where = f"task {task_id} failed: " if task_id else ""
        super().__init__(f"{where}{exc_type}: {exc_message}")

    def __str__(self) -> str:
        text = super().__str__()
        if self.traceback:
            return f"{text}\n\nRemote traceback:\n{self.traceback.rstrip()}"
        return text


class SoftTimeLimitExceeded(RabbitqError):
    """Raised inside a running task when its ``soft_time_limit`` passes, so it can clean up.

    Best effort for plain functions: Python delivers it only between bytecodes (never inside
    ``time.sleep``, a socket read, a lock wait or C code), and a bare ``except`` swallows it.
    An ``async def`` task receives it at its current ``await``. Not raised again if caught.
    """


class TimeLimitExceeded(RabbitqError):
    """A task ran past its hard ``time_limit`` and was stopped. Retried if the task's
    ``autoretry_for`` names it, otherwise dead-lettered with reason ``time-limit``."""

    reason = "time-limit"


class Retry(RabbitqError):
    """Raised by ``self.retry(...)`` inside a task: the worker schedules the next attempt.

    Not a failure: the worker publishes the retry (same task id) through the delay levels,
    waits for the broker's confirm, then acks the current delivery.
    """

    def __init__(
        self,
        exc: BaseException | None = None,
        countdown: float | None = None,
        eta: object = None,
        max_retries: int | None = None,
    ) -> None:
        self.exc = exc
        self.countdown = countdown
        self.eta = eta
        self.max_retries = max_retries
        when = f" in {countdown:g}s" if countdown is not None else ""
        super().__init__(f"retry{when}" + (f": {type(exc).__name__}: {exc}" if exc else ""))


class Deferred(RabbitqError):
    """Raised by a middleware's ``admit``: the delivery was settled elsewhere (a limit moved
    it to a waiting queue, confirmed, and acked it); the pipeline leaves it there."""


class SkipTask(RabbitqError):
    """Raised by a middleware's ``before_process``: ack the message without running the task.

    Not a failure: nothing is retried or dead-lettered; its state is REVOKED (Celery's state
    for a task that was not run), a chord it belongs to fails, and ``after_skip`` hooks are
    told why.
    """

    def __init__(self, reason: str = "skipped") -> None:
        self.reason = reason
        super().__init__(reason)


class TaskRevokedError(RabbitqError):
    """A task that was revoked: what its REVOKED result holds, and what ``get()`` raises."""


class Terminated(TaskRevokedError):
    """Raised inside a running task revoked with ``terminate=True``, so it can clean up.

    Delivered the way ``SoftTimeLimitExceeded`` is (best effort for plain functions: between
    bytecodes only). A task that lets it propagate ends REVOKED: acked, neither retried nor
    dead-lettered. One that catches it and returns ends as it returns.
    """


class ControlError(RabbitqError):
    """A remote-control request could not be sent, or no worker answered it."""


class FollowupError(RabbitqError):
    """A task succeeded, but its follow-ups (result, next chain step, callbacks, chord part)
    could not be published. The task is not run again; the message goes to ``<queue>.dead``
    with reason ``followup-failed`` and this error."""


class BrokerTlsError(BrokerConnectionError):
    """The TLS handshake with the broker failed on every node: its certificate is not
    trusted by the CA given (``broker_use_ssl={"ca_certs": ...}``), names another host, or it
    refused our client certificate. Retrying does not help. (The management API's TLS
    failures are ``BrokerConnectionError``; Redis's are ``ResultBackendError``.)"""
