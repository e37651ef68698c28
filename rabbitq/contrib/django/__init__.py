"""Django: publish after the transaction commits, settings from Django's, tasks from apps.

``proj/rabbitq_app.py`` (the ``celery.py`` of a Celery project)::

    import os
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

    from rabbitq.contrib.django import app_from_settings, autodiscover_tasks

    app = app_from_settings("proj")   # RABBITQ_BROKER_URL, RABBITQ_RESULT_BACKEND, ...
    autodiscover_tasks(app)           # every installed app's tasks.py

and in a view, ``send_receipt.delay_on_commit(order.pk)``. ``rabbitq worker -A
proj.rabbitq_app`` then finds every task. See docs/frameworks.md.

Django is imported inside the functions only: ``import rabbitq`` (and this module) never
loads it, so a project without Django pays nothing. Importing this module without Django
installed raises ``MissingExtraError`` naming the ``rabbitq[django]`` extra.

``delay_on_commit`` follows Celery 5.4's ``DjangoTask``: it hands the publish to Django's
``transaction.on_commit``, so

- inside ``atomic()`` the message is published after the outermost block commits, and never
  if it (or the savepoint the call was made in) rolls back;
- in autocommit (no ``atomic()`` block, Django's default outside ``ATOMIC_REQUESTS``) there is
  no transaction to wait for: it publishes at once, as ``delay`` does;
- it returns ``None``: there is no message yet (pass ``task_id=`` to ``apply_async_on_commit``
  to know the id in advance);
- a failed publish at commit raises from the ``commit`` (the data is committed by then).

Where Celery has no such method at all (a plain ``Task``, outside Django), rabbitq raises
``ConfigurationError``: with Django absent or its settings unconfigured there is no
transaction to wait for, and publishing at once would hide that. Call ``delay`` there.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rabbitq.errors import ConfigurationError
from rabbitq.extras import require
from rabbitq.middleware.middleware import Middleware
from rabbitq.on_commit import on_commit

if TYPE_CHECKING:
    from rabbitq.app import App

# A look-up, not an import: Django itself is imported by the functions that use it.
require("django", feature="rabbitq.contrib.django")

__all__ = [
    "app_from_settings",
    "app_options",
    "autodiscover_tasks",
    "django_settings",
    "import_task_modules",
    "on_commit",
    "setting_names",
]

PREFIX = "RABBITQ_"
# The one setting not named after its App argument: the environment's name for it.
_RENAMED = {"broker": "RABBITQ_BROKER_URL"}


# -- settings --------------------------------------------------------------------------------


def setting_names() -> dict[str, str]:
    """Each ``App`` argument's Django setting: ``{"RABBITQ_BROKER_URL": "broker", ...}``."""
    from rabbitq.app import App

    parameters = list(inspect.signature(App.__init__).parameters)[2:]  # not self, name
    return {_RENAMED.get(p, PREFIX + p.upper()): p for p in parameters}


def app_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The ``App`` arguments that ``RABBITQ_*`` entries of ``settings`` give; any other
    ``RABBITQ_*`` name is refused (a typo would otherwise be silently ignored)."""
    names = setting_names()
    options: dict[str, Any] = {}
    for key, value in settings.items():
        if not key.startswith(PREFIX):
            continue
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigurationError(f"unknown Django setting {key}{hint}")
        options[names[key]] = value
    return options


def django_settings() -> dict[str, Any]:
    """The ``RABBITQ_*`` entries of Django's settings (loading them if need be)."""
    from django.conf import settings

    return {key: getattr(settings, key) for key in dir(settings) if key.startswith(PREFIX)}


def app_from_settings(name: str = "rabbitq", **overrides: Any) -> App:
    """An ``App`` configured from Django's ``RABBITQ_*`` settings; ``overrides`` win.

    A setting beats the environment (``App`` reads ``$RABBITQ_BROKER_URL`` only when no
    broker is given): write ``RABBITQ_BROKER_URL = os.environ.get(...)`` to keep both.
    """
    from rabbitq.app import App

    return App(name, **{**app_options(django_settings()), **overrides})


# -- task discovery --------------------------------------------------------------------------


def autodiscover_tasks(
    app: App, packages: Iterable[str] | None = None, related_name: str = "tasks"
) -> None:
    """Import ``<package>.tasks`` of each installed Django app (or of ``packages``) that has
    one, registering their tasks on ``app``, as Celery's ``app.autodiscover_tasks()``.

    Django's apps must be loaded to list them: this calls ``django.setup()`` when nothing
    has (a worker importing ``proj.rabbitq_app``). Called while Django is loading its apps (a
    ``models.py`` importing the app module), it waits: each worker process imports the
    modules before it connects.
    """
    from django.apps import apps

    if packages is None and not apps.ready and apps.loading:
        app.add_middleware(_DiscoverInWorker(related_name))
        return
    if packages is None and not apps.ready:
        import django

        django.setup()
    import_task_modules(packages, related_name)


def import_task_modules(packages: Iterable[str] | None, related_name: str) -> list[str]:
    """Import ``<package>.<related_name>`` where it exists; the modules imported."""
    if packages is None:
        from django.apps import apps

        packages = [config.name for config in apps.get_app_configs()]
    imported = []
    for package in packages:
        module = f"{package}.{related_name}"
        # find_spec, not a caught ImportError: an error inside tasks.py must surface.
        if _has_module(module):
            importlib.import_module(module)
            imported.append(module)
    return imported


def _has_module(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the package is a plain module, not a package
        return False


class _DiscoverInWorker(Middleware):
    """Middleware: discovery put off until a worker process starts (Django loaded by then)."""

    def __init__(self, related_name: str) -> None:
        super().__init__()
        self.related_name = related_name

    def process_start(self, app: Any) -> None:
        from django.apps import apps

        if not apps.ready:
            import django

            django.setup()
        import_task_modules(None, self.related_name)
