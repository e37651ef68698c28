"""prometheus-client, or an error naming the extra that brings it.

Every module of ``rabbitq.metrics`` that needs the client imports it from here, so a missing
extra is reported the same way wherever it is first needed.
"""

from __future__ import annotations

from rabbitq.errors import ConfigurationError

try:
    import prometheus_client
    import prometheus_client.core
    import prometheus_client.mmap_dict
    import prometheus_client.multiprocess
    import prometheus_client.registry
except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
    raise ConfigurationError(
        f"rabbitq's metrics need prometheus-client ({exc}): pip install 'rabbitq[metrics]'"
    ) from exc

__all__ = ["prometheus_client"]
