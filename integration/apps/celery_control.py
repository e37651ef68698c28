"""A bare Celery 5 app for ``celery -A integration.apps.celery_control inspect|control``: only
its broker matters, as for an operator's own project pointed at rabbitq workers."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("control", broker=os.environ["RABBITQ_BROKER_URL"], set_as_current=False)
