"""rabbitq: background jobs for Python, RabbitMQ-first.

import rabbitq

app = rabbitq.App("shop", broker="amqp://guest:guest@localhost:5672/")

@app.task(queue="emails")
def send_welcome(user_id: int) -> None: ...

send_welcome.delay(42)                 # returns once the broker confirmed the message
await send_welcome.adelay(42)          # the same from asyncio code
"""

from rabbitq.app import App
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
    RoutingConfigError,
    TaskArgumentsError,
    TopologyConflictError,
    UnknownTaskError,
    UnroutableError,
)
from rabbitq.result import AsyncResult
from rabbitq.task import Task, TaskRequest

__all__ = [
    "App",
    "AsyncResult",
    "BrokerConnectionError",
    "BrokerError",
    "ConfigurationError",
    "MessageDecodeError",
    "MessageError",
    "PublishError",
    "PublishNackedError",
    "PublishTimeoutError",
    "RabbitqError",
    "RoutingConfigError",
    "Task",
    "TaskArgumentsError",
    "TaskRequest",
    "TopologyConflictError",
    "UnknownTaskError",
    "UnroutableError",
]
