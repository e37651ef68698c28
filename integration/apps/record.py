"""What the test apps' tasks did, one line each, in the file named by $RABBITQ_TEST_RECORD.

O_APPEND writes of one short line are atomic, so several worker processes (rabbitq's and
Celery's) can share the file.
"""

from __future__ import annotations

import os


def append_record(line: str) -> None:
    fd = os.open(os.environ["RABBITQ_TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)
