"""The optional extras (``pip install 'rabbitq[metrics]'``): which packages each brings, and
the check an optional feature makes before importing them.

A feature whose extra is missing fails where it is asked for, with a ``MissingExtraError``
that names the extra, not with a bare ``ModuleNotFoundError`` from deep inside one of its
modules. ``import rabbitq`` imports none of these packages.

The table mirrors ``[project.optional-dependencies]`` in pyproject.toml
(``tests/test_extras.py`` holds them together). TLS needs no extra: it is Python's ``ssl``.
"""

from __future__ import annotations

import importlib.util

from rabbitq.errors import MissingExtraError

# extra -> {import name: distribution name}, in the order a message should name them.
EXTRAS: dict[str, dict[str, str]] = {
    "redis": {"redis": "redis"},
    "postgres": {"psycopg": "psycopg", "psycopg_pool": "psycopg-pool"},
    "metrics": {"prometheus_client": "prometheus-client"},
    # python-multipart's own name is python_multipart since 0.0.13; ``multipart`` is in every
    # version the extra allows.
    "dashboard": {
        "starlette": "starlette",
        "uvicorn": "uvicorn",
        "jinja2": "jinja2",
        "multipart": "python-multipart",
    },
    "django": {"django": "django"},
}


def missing_modules(extra: str) -> list[str]:
    """The import names of ``extra`` that cannot be found."""
    # find_spec locates a top-level package without running it: the check costs no import,
    # and a module set to None in sys.modules (how tests hide a package) counts as missing.
    return [module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None]


def require(extra: str, *, feature: str, hint: str = "") -> None:
    """Raise ``MissingExtraError`` unless every package of ``extra`` is installed.

    ``feature`` opens the message ("rabbitq.metrics needs prometheus-client, ..."); ``hint``
    is added in parentheses (what to do instead, when installing is not the answer).
    """
    missing = missing_modules(extra)
    if missing:
        distributions = [EXTRAS[extra][module] for module in missing]
        raise MissingExtraError(feature, extra, distributions, module=missing[0], hint=hint)
