"""Middleware: the seam for behaviour that cuts across every task (see ``middleware.py``)."""

from rabbitq.middleware.celery_signals import CelerySignals
from rabbitq.middleware.middleware import DeadLettered, Middleware, Outcome, TaskContext
from rabbitq.middleware.stack import MiddlewareStack
from rabbitq.middleware.stats import WorkerStats

__all__ = [
    "CelerySignals",
    "DeadLettered",
    "Middleware",
    "MiddlewareStack",
    "Outcome",
    "TaskContext",
    "WorkerStats",
]
