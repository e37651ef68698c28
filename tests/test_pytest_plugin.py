"""rabbitq's pytest plugin, as a user's test run loads it (its ``pytest11`` entry point)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SHOP = """
import rabbitq

app = rabbitq.App("shop", broker="amqp://guest:guest@127.0.0.1:1/")

@app.task
def add(a, b):
    return a + b
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # In process, with the plugin found by its entry point as in a user's run.
    return pytester.runpytest("-p", "no:cacheprovider", "-o", LOOP_SCOPE, *args)


LOOP_SCOPE = "asyncio_default_fixture_loop_scope=function"  # pytest-asyncio's warning


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.syspathinsert()
    pytester.makepyfile(shopapp=SHOP)
    return pytester


def test_the_ini_option_names_the_app_the_fixtures_use(shop: pytest.Pytester) -> None:
    shop.makeini("[pytest]\nrabbitq_app = shopapp:app\n")
    shop.makepyfile(
        test_it="""
        def test_app(rabbitq_app):
            assert rabbitq_app.name == "shop"
        """
    )
    run(shop).assert_outcomes(passed=1)


def test_the_command_line_option_names_the_app(shop: pytest.Pytester) -> None:
    shop.makepyfile(
        test_it="""
        def test_app(rabbitq_app):
            assert rabbitq_app.name == "shop"
        """
    )
    run(shop, "--rabbitq-app", "shopapp:app").assert_outcomes(passed=1)


def test_without_either_the_app_is_a_fresh_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_it="""
        def test_app(rabbitq_app):
            assert rabbitq_app.name == "tests"
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_an_app_that_cannot_be_loaded_is_an_error_naming_it(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_it="def test_app(rabbitq_app): pass")
    outcome = run(shop, "--rabbitq-app", "shopapp:nothing_here")
    outcome.assert_outcomes(errors=1)
    outcome.stdout.fnmatch_lines(["*nothing_here*"])


def test_the_stub_points_the_app_at_memory_for_one_test_only(shop: pytest.Pytester) -> None:
    shop.makepyfile(
        test_it="""
        def test_stubbed(rabbitq_app, rabbitq_stub):
            assert rabbitq_app.broker_url == rabbitq_stub.url

        def test_after(rabbitq_app):
            assert rabbitq_app.broker_url == "amqp://guest:guest@127.0.0.1:1/"
            assert rabbitq_app.result_backend_url is None
        """
    )
    run(shop, "--rabbitq-app", "shopapp:app").assert_outcomes(passed=2)


def test_the_stub_worker_runs_the_app_s_tasks(shop: pytest.Pytester) -> None:
    shop.makepyfile(
        test_it="""
        from shopapp import add

        def test_add(rabbitq_stub_worker):
            result = add.delay(2, 3)
            rabbitq_stub_worker.join()
            assert result.get(timeout=1) == 5
        """
    )
    run(shop, "--rabbitq-app", "shopapp:app").assert_outcomes(passed=1)


def test_eager_runs_each_delay_before_it_returns(shop: pytest.Pytester) -> None:
    shop.makepyfile(
        test_it="""
        from shopapp import add

        def test_add(rabbitq_eager):
            assert add.delay(2, 3).get(timeout=1) == 5
        """
    )
    run(shop, "--rabbitq-app", "shopapp:app").assert_outcomes(passed=1)
