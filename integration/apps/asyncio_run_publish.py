"""A script that publishes with ``asyncio.run(task.adelay())`` and then stays alive.

``python -m integration.apps.asyncio_run_publish <broker url> <queue>``. After the loop has
ended it opens a marker connection named ``marker-<pid>`` and prints ``ready``: once the
broker lists the marker, it has seen everything this process did to its connections before.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pika

import rabbitq

url, queue = sys.argv[1], sys.argv[2]
app = rabbitq.App("asyncio-run", broker=url)
task = app.task(name="asyncio_run.noop", queue=queue)(lambda: None)
asyncio.run(task.adelay())
parameters = pika.URLParameters(url)
parameters.client_properties = {"connection_name": f"marker-{os.getpid()}"}
marker = pika.BlockingConnection(parameters)
print("ready", flush=True)
time.sleep(120)
