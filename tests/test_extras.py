"""Optional features and their extras: a feature asked for without its extra raises
``MissingExtraError`` naming the extra to install, never a bare ``ModuleNotFoundError``."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import rabbitq
from rabbitq.extras import EXTRAS, require

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

# Each optional feature as a user reaches it, and a package of its extra to hide.
FEATURES = {
    "redis": ("redis", "rabbitq.App('x', result_backend='redis://127.0.0.1:1/0').backend"),
    "postgres": (
        "psycopg",
        "rabbitq.App('x', result_backend='postgresql://u@127.0.0.1:1/db').backend",
    ),
    "metrics": ("prometheus_client", "importlib.import_module('rabbitq.metrics.queue_gauges')"),
    "dashboard": ("jinja2", "importlib.import_module('rabbitq.dashboard.app')"),
    "django": ("django", "importlib.import_module('rabbitq.contrib.django')"),
}


def run_hiding(module: str, code: str) -> subprocess.CompletedProcess[str]:
    # None in sys.modules makes the import fail, as if the package were not installed.
    script = f"import importlib, sys; sys.modules[{module!r}] = None\nimport rabbitq\n{code}"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def test_every_extra_of_pyproject_is_known_with_its_packages() -> None:
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    declared.pop("dev")
    assert {
        extra: sorted(requirement_name(r) for r in requirements)
        for extra, requirements in declared.items()
    } == {extra: sorted(packages.values()) for extra, packages in EXTRAS.items()}


@pytest.mark.parametrize("extra", sorted(FEATURES))
def test_a_feature_without_its_extra_raises_missing_extra_error_naming_it(extra: str) -> None:
    hidden, use = FEATURES[extra]
    code = (
        f"try:\n    {use}\nexcept rabbitq.MissingExtraError as exc:\n"
        "    print(exc.extra, '|', exc)\n"
    )
    out = run_hiding(hidden, code)
    assert out.stdout.startswith(f"{extra} |"), out.stderr
    assert f"pip install 'rabbitq[{extra}]'" in out.stdout


def test_the_error_names_the_missing_packages_by_their_distribution_names() -> None:
    out = run_hiding(
        "multipart",
        "from rabbitq.extras import require\n"
        "sys.modules['uvicorn'] = None\n"
        "require('dashboard', feature='the dashboard')\n",
    )
    assert (
        "MissingExtraError: the dashboard needs uvicorn and python-multipart, which are not "
        "installed: pip install 'rabbitq[dashboard]'"
    ) in out.stderr


def test_a_hint_follows_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "django", None)
    with pytest.raises(rabbitq.MissingExtraError) as caught:
        require("django", feature="delay_on_commit", hint="outside Django, use delay()")
    assert str(caught.value).endswith("pip install 'rabbitq[django]' (outside Django, use delay())")


def test_the_error_is_a_configuration_error_and_an_import_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(rabbitq.ConfigurationError) as caught:
        require("metrics", feature="rabbitq.metrics")
    assert isinstance(caught.value, ImportError)
    assert caught.value.name == "prometheus_client"


def test_an_installed_extra_passes_the_check() -> None:
    require("metrics", feature="rabbitq.metrics")  # the dev install has every extra


def test_the_check_imports_none_of_the_extra_s_packages() -> None:
    code = (
        "import sys\nfrom rabbitq.extras import require\n"
        "require('dashboard', feature='x')\n"
        "print(sorted({'starlette', 'uvicorn', 'jinja2', 'multipart'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
