"""rabbitq.contrib.django and ``delay_on_commit`` (Celery 5.4's semantics), without a broker:
the publish itself is recorded, the transaction is Django's own on in-memory SQLite."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import rabbitq
from rabbitq.contrib.django import app_options, autodiscover_tasks, import_task_modules

django = pytest.importorskip("django")

INSTALLED_APPS = ["django.contrib.contenttypes", "tests.django_shop"]


@pytest.fixture(scope="module", autouse=True)
def django_configured() -> None:
    """Django configured once per test process (``settings.configure`` cannot be undone)."""
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            INSTALLED_APPS=INSTALLED_APPS,
            RABBITQ_BROKER_URL="amqp://guest:guest@broker.example:5672/",
            RABBITQ_DEFAULT_QUEUE="web",
        )
        django.setup()


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    """What the test app's tasks published: (task name, args, kwargs, options)."""
    from tests.django_shop import tasks

    sent: list[tuple[Any, ...]] = []

    def send_task(name: str, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        options.pop("_task", None)
        sent.append((name, tuple(args or ()), dict(kwargs or {}), options))

    monkeypatch.setattr(tasks.app, "send_task", send_task)
    yield sent


def test_delay_on_commit_publishes_when_the_transaction_commits(
    published: list[tuple[Any, ...]],
) -> None:
    from django.db import transaction

    from tests.django_shop.tasks import send_receipt

    with transaction.atomic():
        send_receipt.delay_on_commit(7)
        assert published == []
    assert published == [(send_receipt.name, (7,), {}, {})]


def test_delay_on_commit_publishes_nothing_when_the_transaction_rolls_back(
    published: list[tuple[Any, ...]],
) -> None:
    from django.db import transaction

    from tests.django_shop.tasks import send_receipt

    with pytest.raises(RuntimeError), transaction.atomic():
        send_receipt.delay_on_commit(7)
        raise RuntimeError("the view failed")
    assert published == []


def test_delay_on_commit_in_a_rolled_back_savepoint_publishes_nothing(
    published: list[tuple[Any, ...]],
) -> None:
    from django.db import transaction

    from tests.django_shop.tasks import send_receipt

    with transaction.atomic():
        send_receipt.delay_on_commit(1)
        with pytest.raises(RuntimeError), transaction.atomic():
            send_receipt.delay_on_commit(2)
            raise RuntimeError("inner block failed")
    assert [call[1] for call in published] == [(1,)]


def test_delay_on_commit_in_autocommit_publishes_at_once(
    published: list[tuple[Any, ...]],
) -> None:
    from tests.django_shop.tasks import send_receipt

    send_receipt.delay_on_commit(order_id=3)
    assert published == [(send_receipt.name, (), {"order_id": 3}, {})]


def test_apply_async_on_commit_keeps_the_publish_options(
    published: list[tuple[Any, ...]],
) -> None:
    from django.db import transaction

    from tests.django_shop.tasks import send_receipt

    with transaction.atomic():
        result = send_receipt.apply_async_on_commit((4,), countdown=10, task_id="known-id")
    assert result is None  # as Celery's: there is no message until the commit
    assert published == [(send_receipt.name, (4,), {}, {"countdown": 10, "task_id": "known-id"})]


def test_rabbitq_settings_become_app_arguments() -> None:
    assert app_options(
        {"RABBITQ_BROKER_URL": "amqp://b/", "RABBITQ_RESULT_BACKEND": "rpc://", "DEBUG": True}
    ) == {"broker": "amqp://b/", "result_backend": "rpc://"}


def test_an_unknown_rabbitq_setting_is_refused_with_the_likely_name() -> None:
    with pytest.raises(rabbitq.ConfigurationError, match="did you mean RABBITQ_BROKER_URL"):
        app_options({"RABBITQ_BROKER_ULR": "amqp://b/"})


def test_app_from_settings_reads_the_django_settings() -> None:
    from rabbitq.contrib.django import app_from_settings

    app = app_from_settings("proj", redelivery_limit=2)
    assert (app.name, app.broker_url, app.default_queue, app.redelivery_limit) == (
        "proj",
        "amqp://guest:guest@broker.example:5672/",
        "web",
        2,
    )


def test_autodiscovery_imports_the_tasks_module_of_each_installed_app_that_has_one() -> None:
    assert import_task_modules(None, "tasks") == ["tests.django_shop.tasks"]
    app = rabbitq.App("discovering")
    autodiscover_tasks(app)  # Django is loaded: imports now, no middleware left behind
    assert "tests.django_shop.tasks" in sys.modules


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_importing_rabbitq_and_its_django_module_does_not_import_django() -> None:
    out = run_python("import sys, rabbitq, rabbitq.contrib.django; print('django' in sys.modules)")
    assert out.stdout.strip() == "False", out.stderr


def test_delay_on_commit_without_django_settings_says_there_is_no_transaction() -> None:
    code = (
        "import rabbitq\n"
        "app = rabbitq.App('x', broker='amqp://guest:guest@127.0.0.1:1/')\n"
        "t = app.task(lambda: None, name='t')\n"
        "try:\n"
        "    t.delay_on_commit()\n"
        "except rabbitq.ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    out = run_python(code)
    assert "outside a configured Django project" in out.stdout, out.stderr


def test_delay_on_commit_without_django_installed_says_so() -> None:
    code = (
        "import sys; sys.modules['django'] = None\n"  # as if it were not installed
        "import rabbitq\n"
        "app = rabbitq.App('x', broker='amqp://guest:guest@127.0.0.1:1/')\n"
        "t = app.task(lambda: None, name='t')\n"
        "try:\n"
        "    t.delay_on_commit()\n"
        "except rabbitq.MissingExtraError as exc:\n"
        "    print(exc)\n"
    )
    out = run_python(code)
    assert "delay_on_commit needs django" in out.stdout, out.stderr
    assert "pip install 'rabbitq[django]'" in out.stdout and "use delay()" in out.stdout


def test_autodiscovery_while_django_loads_its_apps_waits_for_the_worker_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.apps import apps

    import rabbitq.contrib.django as contrib

    imported: list[str] = []
    monkeypatch.setattr(contrib, "import_task_modules", lambda p, name: imported.append(name))
    monkeypatch.setattr(apps, "ready", False)
    monkeypatch.setattr(apps, "loading", True)  # as from a models.py importing the app
    app = rabbitq.App("loading")
    autodiscover_tasks(app)
    assert imported == []
    monkeypatch.setattr(apps, "ready", True)
    monkeypatch.setattr(apps, "loading", False)
    app.middleware.call("process_start", app)
    assert imported == ["tasks"]
