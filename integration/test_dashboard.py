"""``rabbitq dashboard`` as a process against a real broker, driven by a real browser
(Playwright's driver with Debian's Chromium): a dead letter appears, is opened, replayed (and
runs), purged; a dashboard with a token refuses whoever has not got it; the overview's refresh
never piles requests up and says what the server said; another site's page reads nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pika
import pytest

import rabbitq
from integration.apps import core_app
from integration.limits_support import publish, workers
from integration.support import (
    REPO_ROOT,
    LoggedProcess,
    queue_depth,
    ran_ids,
    running_worker,
    wait_for,
)
from rabbitq.message import TaskMessage, encode_task
from rabbitq.serializers import MSGPACK
from rabbitq.testing import free_port

# The dashboard in a real browser, not the broker's version: once, in the first pass.
pytestmark = pytest.mark.first_pass_only

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WAIT_MS = 30_000  # the longest a page may take to show what the broker has
TOKEN = "integration-token-0123456789"


class Dashboard:
    def __init__(self, process: LoggedProcess, port: int, host: str = "127.0.0.1") -> None:
        self.process = process
        self.base = f"http://{host}:{port}"

    def answers(self) -> bool:
        try:
            httpx.get(self.base + "/login", timeout=5)
            return True
        except httpx.TransportError:
            return False


def start_dashboard(
    broker_url: str, management_url: str, tmp_path: Path, *extra: str, token: str | None = None,
    bind: str = "127.0.0.1",
) -> Dashboard:  # fmt: skip
    port = free_port()
    process = LoggedProcess(
        [sys.executable, "-m", "rabbitq", "dashboard", "--port", str(port), "--bind", bind,
         "--broker", broker_url, "--management-url", management_url, *extra],
        tmp_path / f"dashboard-{port}.log",
        {"RABBITQ_DASHBOARD_TOKEN": token or ""},
    )  # fmt: skip
    dashboard = Dashboard(process, port, bind)
    try:
        wait_for(dashboard.answers, 60, lambda: f"dashboard did not answer:\n{process.log()}")
    except AssertionError:
        process.stop(10)
        raise
    return dashboard


@pytest.fixture
def dashboard(broker_url: str, management_url: str, tmp_path: Path) -> Iterator[Dashboard]:
    running = start_dashboard(broker_url, management_url, tmp_path)
    yield running
    running.process.stop(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("needs Chromium (apt-get install chromium; scripts/bootstrap.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _dead_row(page: Any, dead_queue: str) -> Any:
    return page.locator("#dead-table tr", has=page.get_by_role("link", name=dead_queue, exact=True))


def test_a_dead_letter_appears_is_opened_replayed_and_runs(
    app: rabbitq.App, broker_url: str, dashboard: Dashboard, page: Any, unique_name: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    dead = unique_name + ".dead"
    fixed = tmp_path / "fixed"
    with running_worker(broker_url, unique_name, tmp_path):
        page.goto(dashboard.base + "/")
        expect(page.locator("#queue-table")).to_contain_text(unique_name, timeout=WAIT_MS)
        task_id = core_app.needs_file.apply_async(
            ("from-dashboard", str(fixed)), queue=unique_name
        ).id
        # The overview refreshes itself: the dead letter appears without a reload.
        expect(_dead_row(page, dead).locator("td").nth(2)).to_have_text("1", timeout=WAIT_MS)

        _dead_row(page, dead).get_by_role("link", name=dead).click()
        page.get_by_role("link", name=task_id).click()
        expect(page.locator("#letter-task")).to_have_text("it.needs_file")
        expect(page.locator("#letter-reason")).to_have_text("task-failed")
        expect(page.locator("#letter-args")).to_contain_text("args: ['from-dashboard',")
        expect(page.locator("#letter-headers")).to_contain_text("rabbitq_original_queue")
        expect(page.locator("#letter-traceback")).to_contain_text("raise FileNotFoundError(path)")

        fixed.touch()  # the operator fixes the cause, then replays
        page.get_by_role("link", name="Replay…").click()
        expect(page.locator("main")).to_contain_text(task_id)
        page.locator("#confirm").click()
        expect(page.locator("#outcome")).to_have_text("Replayed 1 dead letter(s).")
        wait_for(lambda: ran_ids(tmp_path / "ran.txt")[task_id] == 1, 30, lambda: "replay ran")
        assert queue_depth(broker_url, dead) == 0
        page.get_by_role("link", name="Overview").first.click()
        expect(_dead_row(page, dead).locator("td").nth(2)).to_have_text("0", timeout=WAIT_MS)


def test_purge_asks_first_and_empties_the_dead_queue(
    app: rabbitq.App, broker_url: str, dashboard: Dashboard, page: Any, unique_name: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    dead = unique_name + ".dead"
    with running_worker(broker_url, unique_name, tmp_path):
        for label in range(2):
            core_app.needs_file.apply_async((label, str(tmp_path / "never")), queue=unique_name)
        wait_for(lambda: queue_depth(broker_url, dead) == 2, 30, lambda: "two dead letters")
    page.goto(f"{dashboard.base}/dead/{dead}")
    expect(page.locator("#letters tbody tr")).to_have_count(2)
    page.get_by_role("link", name="Purge…").click()
    page.get_by_role("link", name="Cancel").click()  # asked, and said no
    assert queue_depth(broker_url, dead) == 2
    expect(page.locator("#letters tbody tr")).to_have_count(2)
    page.get_by_role("link", name="Purge…").click()
    expect(page.locator("main")).to_contain_text("All 2 message(s)")
    page.locator("#confirm").click()
    expect(page.locator("#outcome")).to_have_text("Deleted 2 message(s).")
    assert queue_depth(broker_url, dead) == 0


def test_a_dashboard_with_a_token_refuses_whoever_has_not_got_it(
    broker_url: str, management_url: str, page: Any, tmp_path: Path
) -> None:
    protected = start_dashboard(broker_url, management_url, tmp_path, token=TOKEN)
    try:
        refused = httpx.get(protected.base + "/api/status", timeout=30)
        assert refused.status_code == 401
        wrong = httpx.get(
            protected.base + "/api/status", headers={"Authorization": "Bearer nope"}, timeout=30
        )
        assert wrong.status_code == 401
        page.goto(protected.base + "/")
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        page.get_by_label("Token").fill("not the token")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_have_text("That is not the token.")
        page.get_by_label("Token").fill(TOKEN)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#total-dead")).to_be_visible(timeout=WAIT_MS)
        right = httpx.get(
            protected.base + "/api/status", headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )  # fmt: skip
        assert right.status_code == 200 and "totals" in right.json()
    finally:
        protected.process.stop(10)


def test_a_non_loopback_bind_without_a_token_does_not_start(broker_url: str) -> None:
    without_token = {k: v for k, v in os.environ.items() if k != "RABBITQ_DASHBOARD_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "rabbitq", "dashboard", "--bind", "0.0.0.0",
         "--port", str(free_port()), "--broker", broker_url],
        cwd=REPO_ROOT, env=without_token, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr


def _dead_letter_in_quorum_queue(broker_url: str, dead: str, delivery_limit: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.queue_declare(
        dead, durable=True,
        arguments={"x-queue-type": "quorum", "x-delivery-limit": delivery_limit},
    )  # fmt: skip
    channel.confirm_delivery()
    envelope = encode_task(TaskMessage(task="it.record", args=[1]), MSGPACK)
    envelope.headers["rabbitq_reason"] = "task-failed"
    channel.basic_publish(
        "", dead, envelope.body,
        pika.BasicProperties(headers=envelope.headers, content_type=envelope.content_type,
                             message_id=envelope.message_id, delivery_mode=2),
    )  # fmt: skip
    connection.close()


def test_a_quorum_dead_queue_that_browsing_could_empty_is_not_browsed_and_says_why(
    broker_url: str, dashboard: Dashboard, unique_name: str
) -> None:
    dead = unique_name + ".dead"
    _dead_letter_in_quorum_queue(broker_url, dead, delivery_limit=2)
    for _ in range(3):  # more looks than the limit would survive
        listing = httpx.get(f"{dashboard.base}/dead/{dead}", timeout=30)
        assert listing.status_code == 200
        assert "quorum queue" in listing.text and "does not look" in listing.text
    assert queue_depth(broker_url, dead) == 1
    assert "Replay all" in listing.text  # which does not browse
    shown = httpx.get(f"{dashboard.base}/dead/{dead}/letters/anything", timeout=30)
    assert shown.status_code == 409 and "does not look" in shown.text
    assert queue_depth(broker_url, dead) == 1
    # Its count is in the overview's figures and the dashboard's /metrics, which never peek.
    wait_for(
        lambda: (
            f'rabbitq_dead_letter_messages{{queue="{dead}",source="{unique_name}"}} 1.0'
            in _scrape(dashboard)
        ),
        30,
        lambda: _scrape(dashboard),
    )


def _scrape(dashboard: Dashboard) -> str:
    return httpx.get(dashboard.base + "/metrics", timeout=30).text


def test_an_unknown_dead_queue_is_a_404_page(dashboard: Dashboard, unique_name: str) -> None:
    missing = httpx.get(f"{dashboard.base}/dead/{unique_name}", timeout=30)
    assert missing.status_code == 404
    assert "There is no dead queue" in missing.text and f"{unique_name}.dead" in missing.text


def test_a_loopback_bind_other_than_127_0_0_1_answers_on_its_address(
    broker_url: str, management_url: str, tmp_path: Path
) -> None:
    other = start_dashboard(broker_url, management_url, tmp_path, bind="127.0.0.2")
    try:
        answer = httpx.get(other.base + "/api/status", timeout=30)
        assert answer.status_code == 200 and "totals" in answer.json()
    finally:
        other.process.stop(10)


def _classic_dead_letter(broker_url: str, dead: str, task_id: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.queue_declare(dead, durable=True)
    channel.confirm_delivery()
    envelope = encode_task(TaskMessage(task="it.record", args=[1], id=task_id), MSGPACK)
    envelope.headers["rabbitq_reason"] = "task-failed"
    channel.basic_publish(
        "", dead, envelope.body,
        pika.BasicProperties(headers=envelope.headers, content_type=envelope.content_type,
                             message_id=envelope.message_id, delivery_mode=2),
    )  # fmt: skip
    connection.close()


def test_a_dead_queue_and_a_task_id_holding_a_slash_open_in_the_browser(
    broker_url: str, dashboard: Dashboard, page: Any, unique_name: str
) -> None:
    dead = f"{unique_name}/billing.dead"
    _classic_dead_letter(broker_url, dead, "import/42")
    try:
        page.goto(f"{dashboard.base}/dead/{quote(dead, safe='')}")
        expect(page.locator("#letters tbody tr")).to_have_count(1)
        page.get_by_role("link", name="import/42").click()
        expect(page.locator("#letter-id")).to_have_text("import/42")
        expect(page.locator("#letter-task")).to_have_text("it.record")
    finally:
        connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        connection.channel().queue_delete(dead)
        connection.close()


def test_the_overview_shows_the_servers_error_not_a_syntax_error(
    dashboard: Dashboard, page: Any
) -> None:
    page.goto(dashboard.base + "/")
    expect(page.locator("#total-dead")).to_be_visible(timeout=WAIT_MS)
    page.route(
        "**/api/status",
        lambda route: route.fulfill(
            status=503, content_type="application/json",
            body=json.dumps({"error": "cannot read the broker's status: it is away"}),
        ),
    )  # fmt: skip
    expect(page.locator("#problems")).to_have_text(
        "cannot read the broker's status: it is away", timeout=WAIT_MS
    )
    expect(page.locator("#stale")).to_be_visible()
    page.unroute("**/api/status")
    page.route(
        "**/api/status",
        lambda route: route.fulfill(status=502, content_type="text/html", body="<h1>proxy</h1>"),
    )
    expect(page.locator("#problems")).to_contain_text("The dashboard answered 502", timeout=WAIT_MS)
    expect(page.locator("#problems")).not_to_contain_text("SyntaxError")


def test_the_overview_never_piles_requests_up_and_gives_up_on_one_after_10_s(
    dashboard: Dashboard, page: Any
) -> None:
    page.goto(dashboard.base + "/")
    expect(page.locator("#total-dead")).to_be_visible(timeout=WAIT_MS)
    held: list[Any] = []
    page.route("**/api/status", lambda route: held.append(route))  # never answered: it hangs
    expect(page.locator("#problems")).to_contain_text("did not answer within 10 s", timeout=WAIT_MS)
    # With a fixed 2 s interval five more would have been sent meanwhile; one waits at a time.
    assert len(held) == 1
    page.unroute("**/api/status")
    expect(page.locator("#stale")).to_be_hidden(timeout=WAIT_MS)  # and it recovers


def test_a_link_on_another_sites_page_does_not_make_the_dashboard_browse_a_dead_queue(
    broker_url: str, dashboard: Dashboard, page: Any, unique_name: str
) -> None:
    """Chromium already blocks <img src="http://127.0.0.1:..."> on a public page (Private
    Network Access); a navigation it lets through, with Sec-Fetch-Site: cross-site."""
    dead = unique_name + ".dead"
    _classic_dead_letter(broker_url, dead, "id-1")
    target = f"{dashboard.base}/dead/{dead}"
    page.route(
        "http://elsewhere.example/**",
        lambda route: route.fulfill(
            content_type="text/html", body=f'<a id="go" href="{target}">dead letters</a>'
        ),
    )
    page.goto("http://elsewhere.example/")
    with page.expect_response(target, timeout=WAIT_MS) as answered:
        page.locator("#go").click()
    assert answered.value.status == 403
    expect(page.locator("body")).to_contain_text("another site's page")
    typed = page.goto(target)  # typed in the address bar: Sec-Fetch-Site: none
    assert typed is not None and typed.status == 200


def test_the_overview_shows_a_global_limit_s_running_and_waiting_tasks(
    broker_url: str, dashboard: Dashboard, page: Any, unique_name: str, tmp_path: Path
) -> None:
    sender = rabbitq.App("throttled", broker=broker_url, default_queue=unique_name)
    with workers(broker_url, unique_name, tmp_path, 1, concurrency=6, killed_after=True):
        publish(sender, "held", [(f"t{i}", 30.0) for i in range(5)])
        page.goto(dashboard.base + "/")
        row = page.locator("#limit-table tr", has_text=f"held-{unique_name}")
        expect(row.locator("td").nth(1)).to_have_text("concurrency", timeout=WAIT_MS)
        expect(row.locator("td").nth(2)).to_have_text("3 at once")
        expect(row.locator("td").nth(4)).to_have_text("3", timeout=WAIT_MS)
        expect(row.locator("td").nth(6)).to_have_text("2", timeout=WAIT_MS)
    sender.close()
