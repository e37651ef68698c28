"""The wheel, installed bare (no extras) into a fresh virtualenv: rabbitq imports, defines a
task and prepares its message without a broker, its command runs, and each optional feature
refuses with a ``MissingExtraError`` that names its extra. With ``rabbitq[metrics]`` the
metrics import.

Slow and in integration/: it builds the wheel and installs its dependencies from the package
index (the network). It needs no broker, so the RabbitMQ 4.0 pass leaves it out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        bool(os.environ.get("RABBITQ_TEST_BROKER_PASS")),
        reason="needs no broker: the first pass ran it",
    ),
]

# Each optional feature as a user reaches it, and the extra its error must name.
FEATURES = {
    "redis": "import rabbitq; rabbitq.App('x', result_backend='redis://127.0.0.1:1/0').backend",
    "postgres": (
        "import rabbitq; rabbitq.App('x', result_backend='postgresql://u@127.0.0.1:1/db').backend"
    ),
    "metrics": "import rabbitq.metrics.worker_metrics",
    "dashboard": "import rabbitq.dashboard.app",
    "django": "import rabbitq.contrib.django",
}


def run(*command: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH or virtualenv of the caller's may leak into the fresh environment.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, env=env, timeout=540
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources: building in the checkout would leave
    build/ behind in it."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "rabbitq", source / "rabbitq", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path_factory.mktemp("wheels")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", out)
    (built,) = out.glob("rabbitq-*.whl")
    return built


def fresh_venv(where: Path, requirement: str) -> Path:
    """A virtualenv with ``requirement`` installed; returns its bin directory."""
    venv.create(where, with_pip=True)
    bin_dir = where / "bin"
    run(bin_dir / "python", "-m", "pip", "install", "-q", requirement)
    return bin_dir


@pytest.fixture(scope="module")
def bare(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_venv(tmp_path_factory.mktemp("bare"), str(wheel))


def python(bin_dir: Path, code: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(bin_dir / "python", "-c", textwrap.dedent(code), check=check)


def test_the_bare_install_has_none_of_the_optional_packages(bare: Path) -> None:
    listed = run(bare / "python", "-m", "pip", "list", "--format=freeze").stdout.lower()
    installed = {line.split("==")[0].replace("_", "-") for line in listed.split()}
    optional = {"redis", "psycopg", "prometheus-client", "starlette", "uvicorn", "django"}
    assert installed & optional == set()


def test_rabbitq_imports_and_reports_pyproject_s_version(bare: Path) -> None:
    out = python(bare, "import rabbitq; print(rabbitq.__version__)")
    assert out.stdout.strip() == VERSION


def test_a_task_is_defined_and_its_message_prepared_without_a_broker(bare: Path) -> None:
    out = python(
        bare,
        """
        import rabbitq
        from rabbitq.prepare import Context

        app = rabbitq.App("shop", broker="amqp://guest:guest@127.0.0.1:1/")

        @app.task(queue="emails")
        def send_welcome(user_id: int) -> None: ...

        prepared = app.prepare_signature(send_welcome.s(42), Context())
        print(prepared.routing_key, prepared.envelope.headers["task"])
        """,
    )
    assert out.stdout.split() == ["emails", "shop.send_welcome"]


def test_the_command_runs(bare: Path) -> None:
    assert "worker" in run(bare / "rabbitq", "--help").stdout
    assert VERSION in run(bare / "rabbitq", "--version").stdout


@pytest.mark.parametrize("extra", sorted(FEATURES))
def test_each_optional_feature_names_its_missing_extra(bare: Path, extra: str) -> None:
    code = f"""
        import rabbitq
        try:
            {FEATURES[extra]}
        except rabbitq.MissingExtraError as exc:
            print(exc.extra)
            print(exc)
        """
    out = python(bare, code)
    assert out.stdout.splitlines()[0] == extra, out.stderr
    assert f"pip install 'rabbitq[{extra}]'" in out.stdout


def test_with_the_metrics_extra_the_metrics_import(
    wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with_metrics = fresh_venv(
        tmp_path_factory.mktemp("metrics"), f"rabbitq[metrics] @ {wheel.as_uri()}"
    )
    out = python(with_metrics, "import rabbitq.metrics.worker_metrics; print('ok')")
    assert out.stdout.strip() == "ok"
