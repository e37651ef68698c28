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
"""

from rabbitq.app import App
from rabbitq.canvas import Signature, chain, chord, group, signature
from rabbitq.errors import (
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    MessageDecodeError,
    MessageError,
    PublishError,
    PublishNackedError,
    PublishTimeoutError,
    RabbitqError,
    ResultEncodeError,
    ResultError,
    ResultsDisabledError,
    ResultTimeoutError,
    RoutingConfigError,
    TaskArgumentsError,
    TaskError,
    TopologyConflictError,
    UnknownTaskError,
    UnroutableError,
)
from rabbitq.result import AsyncResult, GroupResult
from rabbitq.results.meta import FAILURE, PENDING, RETRY, STARTED, SUCCESS
from rabbitq.task import Task, TaskRequest

__all__ = [
    "FAILURE",
    "PENDING",
    "RETRY",
    "STARTED",
    "SUCCESS",
    "App",
    "AsyncResult",
    "BrokerConnectionError",
    "BrokerError",
    "ConfigurationError",
    "GroupResult",
    "MessageDecodeError",
    "MessageError",
    "PublishError",
    "PublishNackedError",
    "PublishTimeoutError",
    "RabbitqError",
    "ResultEncodeError",
    "ResultError",
    "ResultTimeoutError",
    "ResultsDisabledError",
    "RoutingConfigError",
    "Signature",
    "Task",
    "TaskArgumentsError",
    "TaskError",
    "TaskRequest",
    "TopologyConflictError",
    "UnknownTaskError",
    "UnroutableError",
    "chain",
    "chord",
    "group",
    "signature",
]
