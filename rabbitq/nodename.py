"""Node names, formed as Celery forms them (``-n/--hostname``).

A node name is ``name@host``: what Flower, ``celery inspect`` and rabbitq's events call a
worker process. The template may use Celery's keys:

    %h  the host name, with its domain     %n  the host name without it
    %d  the domain                          %%  a literal %
    %i  the process index: 1..N under ``--processes N``, 0 for a single process
    %I  the same with a dash ("-2"), empty for a single process

A template without ``@`` names the host, as in Celery (``-n web1`` is ``rabbitq@web1``).
Each process of ``--processes N`` is a node of its own (its own consumer, heartbeat and
control queue), so a template without ``%i`` or ``%I`` gets ``-<index>`` after its name part:
the default ``rabbitq@%h`` becomes ``rabbitq-1@host``, ``rabbitq-2@host``, ...
"""

from __future__ import annotations

import re
import socket

from rabbitq.errors import ConfigurationError

DEFAULT_NODENAME = "rabbitq@%h"
DEFAULT_NAME = "rabbitq"
_KEY = re.compile(r"%(.)")


def format_nodename(
    template: str, process_index: int = 0, *, processes: int = 1, host: str | None = None
) -> str:
    """The node name of the process with ``process_index`` (0: the only one)."""
    if not template.strip():
        raise ConfigurationError("the node name (-n) is empty")
    name, at, machine = template.rpartition("@")
    if not at:  # "-n web1": a host, the name is ours (Celery's reading)
        name, machine = DEFAULT_NAME, template
    if processes > 1 and "%i" not in template and "%I" not in template:
        name += "-%i"
    full = host or socket.gethostname()
    short, _, domain = full.partition(".")
    keys = {
        "h": full,
        "n": short,
        "d": domain,
        "i": str(process_index),
        "I": f"-{process_index}" if process_index else "",
        "%": "%",
    }

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in keys:
            raise ConfigurationError(
                f"node name {template!r}: unknown key %{key} (known: %h %n %d %i %I %%)"
            )
        return keys[key]

    formatted = _KEY.sub(substitute, f"{name}@{machine}")
    if any(c.isspace() for c in formatted):
        raise ConfigurationError(f"node name {formatted!r} contains white space")
    return formatted
