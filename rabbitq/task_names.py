"""The name ``@app.task`` gives a function: ``<module>.<qualname>``, as Celery's.

A message carries only the task's name, and a worker finds the function by it, so the caller
and the worker must agree on the name. They do for a module both import. A script run as
``python tasks.py`` or ``python -m proj.tasks`` is different: there the module is called
``__main__``, while a worker started with ``rabbitq worker -A tasks`` (or ``-A proj.tasks``)
imports it under its real name. Celery names such tasks after the app (``Celery("proj")``
gives ``proj.add``), which a worker resolves only when the app is named after the module.
rabbitq names them after the module the worker will import, found from the script:

* ``python -m proj.tasks``: the name Python imported it by (``__main__.__spec__.name``);
* ``python proj/tasks.py``: the file's name, inside its package when the folder has an
  ``__init__.py`` (``proj.tasks``; without one, ``tasks``);
* no file (an interactive session, ``python -c``): the app's name, as Celery does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def task_name_for(function: Callable[..., Any], app_name: str) -> str:
    """The default name of a task made from ``function`` by the app named ``app_name``."""
    module = getattr(function, "__module__", None) or "__main__"
    qualname = getattr(function, "__qualname__", None) or function.__name__
    if module == "__main__":
        module = main_module_name() or app_name
    return f"{module}.{qualname}"


def main_module_name() -> str | None:
    """The name a worker importing the ``__main__`` script would know it by, if any."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    spec_name = getattr(spec, "name", None)
    if isinstance(spec_name, str) and spec_name not in ("__main__", ""):
        # ``python -m pkg`` runs pkg.__main__; a worker importing pkg would not see its tasks
        # under that name either, but it is the module's real name.
        return spec_name
    file = getattr(main, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return None
    path = Path(file).resolve()
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists() and folder.name.isidentifier():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)
