"""prometheus-client and the submodules rabbitq uses, imported in one place.

The extra is checked before this runs (``rabbitq/metrics/__init__.py``): importing this
without prometheus-client raises ``MissingExtraError``, not ``ModuleNotFoundError``.
"""

from __future__ import annotations

import prometheus_client
import prometheus_client.core
import prometheus_client.mmap_dict
import prometheus_client.multiprocess
import prometheus_client.registry

__all__ = ["prometheus_client"]
