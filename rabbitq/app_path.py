"""Finding the App that ``-A module[:attribute]`` names, for the worker and the beat."""

from __future__ import annotations

import importlib

from rabbitq.app import App
from rabbitq.errors import ConfigurationError


def load_app(path: str) -> App:
    """Import ``module[:attribute]`` and return the App it names (``-A shop.tasks``)."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import app module {module_name!r}: {exc}") from exc
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, App):
            raise ConfigurationError(f"{path!r} does not name a rabbitq.App")
        return found
    apps = [value for value in vars(module).values() if isinstance(value, App)]
    if len(apps) != 1:
        raise ConfigurationError(
            f"module {module_name!r} defines {len(apps)} rabbitq.App objects; "
            f"name one as {module_name}:ATTRIBUTE"
        )
    return apps[0]
