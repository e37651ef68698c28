"""rabbitq: background jobs for Python, RabbitMQ-first.

import rabbitq

app = rabbitq.App("shop", broker="amqp://guest:guest@localhost:5672/",
                  result_backend="rpc://")

@app.task(queue="emails")
def send_welcome(user_id: int) -> None: ...

send_welcome.delay(42)                 # returns once the broker confirmed the message
await send_welcome.adelay(42)          # the same from asyncio code
add.delay(2, 3).get(timeout=10)        # results, with a backend
rabbitq.chord(add.s(i, i) for i in range(10))(tsum.s())   # workflows, no backend needed
@app.task(limits=rabbitq.Mutex("per-user", key="user_id"))  # global limits (docs/limits.md)
app = rabbitq.App(..., middleware=[MyMiddleware()])   # hooks around every task
app.add_periodic(report.s(), cron="0 7 * * mon", timezone="Europe/Paris")  # rabbitq beat
"""

from rabbitq.app import App
from rabbitq.beat.schedules import Crontab, Every, PeriodicEntry, crontab
from rabbitq.canvas import Signature, chain, chord, group, signature
from rabbitq.errors import (
    BadSignatureError,
    BodyTooDeepError,
    BodyTooLargeError,
    BrokerConnectionError,
    BrokerError,
    BrokerTlsError,
    ConfigFileError,
    ConfigurationError,
    ControlError,
    Deferred,
    EventHistoryMissingError,
    FollowupError,
    GetInsideTaskError,
    MessageDecodeError,
    MessageError,
    MessageTooLargeError,
    MissingExtraError,
    NotSupportedError,
    PublishConnectionError,
    PublishError,
    PublishNackedError,
    PublishTimeoutError,
    RabbitqError,
    ResultBackendError,
    ResultEncodeError,
    ResultError,
    ResultsDisabledError,
    ResultTimeoutError,
    RoutingConfigError,
    ScheduleConfigError,
    SkipTask,
    SoftTimeLimitExceeded,
    TaskArgumentsError,
    TaskError,
    TaskRevokedError,
    Terminated,
    TimeLimitExceeded,
    TopologyConflictError,
    UnknownTaskError,
    UnroutableError,
    UnsupportedMessageError,
)
from rabbitq.limits.spec import Concurrency, Mutex, Rate
from rabbitq.middleware import DeadLettered, Middleware, Outcome, TaskContext
from rabbitq.results.handles import AsyncResult, GroupResult
from rabbitq.results.meta import FAILURE, PENDING, RETRY, REVOKED, STARTED, SUCCESS
from rabbitq.task import Task, TaskRequest
from rabbitq.task_logs import JsonLogFormatter, TaskLogFilter
from rabbitq.versions import package_version

# pyproject.toml's version, as installed (semantic versioning; CHANGELOG.md lists each).
__version__ = package_version()

__all__ = [
    "FAILURE",
    "PENDING",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "App",
    "AsyncResult",
    "BadSignatureError",
    "BodyTooDeepError",
    "BodyTooLargeError",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerTlsError",
    "Concurrency",
    "ConfigFileError",
    "ConfigurationError",
    "ControlError",
    "Crontab",
    "DeadLettered",
    "Deferred",
    "EventHistoryMissingError",
    "Every",
    "FollowupError",
    "GetInsideTaskError",
    "GroupResult",
    "JsonLogFormatter",
    "MessageDecodeError",
    "MessageError",
    "MessageTooLargeError",
    "Middleware",
    "MissingExtraError",
    "Mutex",
    "NotSupportedError",
    "Outcome",
    "PeriodicEntry",
    "PublishConnectionError",
    "PublishError",
    "PublishNackedError",
    "PublishTimeoutError",
    "RabbitqError",
    "Rate",
    "ResultBackendError",
    "ResultEncodeError",
    "ResultError",
    "ResultTimeoutError",
    "ResultsDisabledError",
    "RoutingConfigError",
    "ScheduleConfigError",
    "Signature",
    "SkipTask",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskArgumentsError",
    "TaskContext",
    "TaskError",
    "TaskLogFilter",
    "TaskRequest",
    "TaskRevokedError",
    "Terminated",
    "TimeLimitExceeded",
    "TopologyConflictError",
    "UnknownTaskError",
    "UnroutableError",
    "UnsupportedMessageError",
    "chain",
    "chord",
    "crontab",
    "group",
    "signature",
]
