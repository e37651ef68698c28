"""Publishing after Django's transaction commits: what ``Task.delay_on_commit`` calls.

It lives low in the package, beside the errors, not in ``rabbitq.contrib.django``: ``task.py``
calls it, and it needs nothing of the app (that package's docstring gives the semantics).
"""

from __future__ import annotations

from collections.abc import Callable

from rabbitq.errors import ConfigurationError
from rabbitq.extras import require


def on_commit(publish: Callable[[], object]) -> None:
    """Run ``publish`` when the current Django transaction commits (now in autocommit)."""
    require("django", feature="delay_on_commit", hint="outside Django, use delay()")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.db import transaction

    try:
        settings.DATABASES  # noqa: B018 - loads the settings, or says there are none
    except ImproperlyConfigured:
        raise ConfigurationError(
            "delay_on_commit outside a configured Django project: there is no transaction "
            "to wait for (set DJANGO_SETTINGS_MODULE, or use delay())"
        ) from None
    transaction.on_commit(publish)
