"""The dashboard's pages over a snapshot built by hand and dead queues in memory."""

from __future__ import annotations

import json
import logging
import re

import pytest
from pika.adapters.utils.connection_workflow import AMQPConnectorStackTimeout

from rabbitq.errors import BrokerConnectionError
from tests.dashboard_support import (
    FixedStatus,
    MemoryDeadQueues,
    csrf_of,
    dashboard,
    dead_letter,
)


def _embedded_status(page: str) -> dict[str, object]:
    found = re.search(r'<script type="application/json" id="initial-status">(.*?)</script>', page)
    assert found
    document: dict[str, object] = json.loads(found.group(1))
    return document


def test_api_status_is_the_status_json() -> None:
    with dashboard() as client:
        document = client.get("/api/status").json()
    assert document["totals"] == {"dead_letters": 1, "delayed": 0, "workers_online": 1}
    assert document["queues"][0]["name"] == "emails"
    assert document["dead_queues"][0]["newest"]["reason"] == "task-failed"


def test_the_overview_page_carries_the_first_snapshot_and_the_flower_link() -> None:
    with dashboard(flower="http://flower.local:5555/") as client:
        page = client.get("/").text
    assert _embedded_status(page)["broker_version"] == "4.0.5"
    assert 'data-flower="http://flower.local:5555"' in page
    assert 'href="http://flower.local:5555/"' in page


def test_an_unreachable_broker_is_a_message_not_a_500() -> None:
    status = FixedStatus(BrokerConnectionError("connection refused"))
    with dashboard(status=status) as client:
        api = client.get("/api/status")
        page = client.get("/")
    assert api.status_code == 503 and "connection refused" in api.json()["error"]
    assert page.status_code == 200 and "connection refused" in _embedded_status(page.text)["error"]


def test_any_exception_from_the_status_collector_is_a_503_not_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pika raises some failures outside its AMQPError tree, AMQPConnectorStackTimeout one."""
    status = FixedStatus(AMQPConnectorStackTimeout("handshake took too long"))
    with caplog.at_level(logging.ERROR, "rabbitq.dashboard"), dashboard(status=status) as client:
        api = client.get("/api/status")
        page = client.get("/")
    assert api.status_code == 503
    assert api.json()["error"] == (
        "cannot read the broker's status: AMQPConnectorStackTimeout: handshake took too long"
    )
    assert page.status_code == 200
    assert "AMQPConnectorStackTimeout" in _embedded_status(page.text)["error"]
    assert any(record.exc_info for record in caplog.records), "logged with its traceback"


def test_the_dead_queue_page_lists_its_dead_letters() -> None:
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1"), dead_letter("id-2")]})
    with dashboard(dead_queues=dead_queues) as client:
        for name in ("emails", "emails.dead"):
            page = client.get(f"/dead/{name}")
            assert page.status_code == 200
            assert "id-1" in page.text and "id-2" in page.text and "task-failed" in page.text


def test_a_dead_letter_page_shows_headers_arguments_and_traceback() -> None:
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1")]})
    with dashboard(dead_queues=dead_queues) as client:
        page = client.get("/dead/emails.dead/letters/id-1").text
    assert "args: [0, &#39;/fixed&#39;]" in page
    assert "rabbitq_reason" in page and "FileNotFoundError" in page
    assert "raise FileNotFoundError" in page


def test_unknown_queues_and_ids_are_404_pages() -> None:
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1")]})
    with dashboard(dead_queues=dead_queues) as client:
        for path in ("/dead/nope", "/dead/nope/letters/id-1", "/dead/emails/letters/nope",
                     "/dead/nope/purge", "/nowhere"):  # fmt: skip
            page = client.get(path)
            assert page.status_code == 404, path
            assert "Traceback" not in page.text


def test_an_unreachable_broker_on_a_dead_queue_page_is_a_503_message() -> None:
    with dashboard(dead_queues=MemoryDeadQueues(unreachable=True)) as client:
        page = client.get("/dead/emails")
    assert page.status_code == 503 and "cannot reach the broker" in page.text


@pytest.mark.parametrize(
    "path", ["/dead/emails", "/dead/emails/letters/id-1", "/dead/emails/replay?all=1"]
)
def test_any_exception_from_a_dead_queue_is_a_503_page_logged_with_its_traceback(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead_queues = MemoryDeadQueues(failure=AMQPConnectorStackTimeout("handshake took too long"))
    with (
        caplog.at_level(logging.ERROR, "rabbitq.dashboard"),
        dashboard(dead_queues=dead_queues) as client,
    ):
        page = client.get(path)
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert "The broker could not be read" in page.text
    assert "AMQPConnectorStackTimeout: handshake took too long" in page.text
    assert "Traceback" not in page.text
    assert any(record.exc_info for record in caplog.records), "logged with its traceback"


def test_a_failing_replay_post_is_a_503_page_too() -> None:
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1")]})
    with dashboard(dead_queues=dead_queues) as client:
        csrf = csrf_of(client.get("/dead/emails/replay?id=id-1").text)
        dead_queues.failure = AMQPConnectorStackTimeout("handshake took too long")
        done = client.post(
            "/dead/emails/replay", data={"csrf": csrf, "id": "id-1", "confirm": "yes"}
        )
    assert done.status_code == 503 and "The broker could not be read" in done.text


def test_replaying_one_needs_the_confirmation_field() -> None:
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1"), dead_letter("id-2")]})
    with dashboard(dead_queues=dead_queues) as client:
        confirm = client.get("/dead/emails/replay?id=id-1")
        assert confirm.status_code == 200 and "id-1" in confirm.text
        csrf = csrf_of(confirm.text)
        unconfirmed = client.post("/dead/emails/replay", data={"csrf": csrf, "id": "id-1"})
        assert unconfirmed.status_code == 400 and dead_queues.replays == []
        done = client.post(
            "/dead/emails/replay", data={"csrf": csrf, "id": "id-1", "confirm": "yes"}
        )
    assert done.status_code == 200 and "Replayed 1 dead letter(s)" in done.text
    assert [d.summary.id for d in dead_queues.queues["emails.dead"]] == ["id-2"]


def test_replaying_all_and_purging_after_confirmation() -> None:
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1"), dead_letter("id-2")]})
    with dashboard(dead_queues=dead_queues) as client:
        csrf = csrf_of(client.get("/dead/emails/replay?all=1").text)
        done = client.post("/dead/emails/replay", data={"csrf": csrf, "all": "1", "confirm": "yes"})
        assert "Replayed 2" in done.text and dead_queues.replays[0].everything
        dead_queues.queues["emails.dead"].append(dead_letter("id-3"))
        assert client.post("/dead/emails/purge", data={"csrf": csrf}).status_code == 400
        purged = client.post("/dead/emails/purge", data={"csrf": csrf, "confirm": "yes"})
    assert "Deleted 1 message(s)" in purged.text and dead_queues.queues["emails.dead"] == []


def test_a_replay_that_names_nothing_is_refused() -> None:
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1")]})
    with dashboard(dead_queues=dead_queues) as client:
        assert client.get("/dead/emails/replay").status_code == 400
        csrf = csrf_of(client.get("/dead/emails/purge").text)
        refused = client.post("/dead/emails/replay", data={"csrf": csrf, "confirm": "yes"})
    assert refused.status_code == 400 and dead_queues.replays == []


def test_a_replay_of_all_that_also_names_ids_is_refused_on_the_confirm_page_and_the_post() -> None:
    """all=1 replays every dead letter: a page naming one id must not say it, nor do it."""
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1"), dead_letter("id-2")]})
    with dashboard(dead_queues=dead_queues) as client:
        confirm = client.get("/dead/emails/replay?all=1&id=id-1")
        assert confirm.status_code == 400
        assert "not both" in confirm.text and "every dead letter" not in confirm.text
        csrf = csrf_of(client.get("/dead/emails/purge").text)
        form = {"csrf": csrf, "confirm": "yes", "all": "1", "id": "id-1"}
        refused = client.post("/dead/emails/replay", data=form)
    assert refused.status_code == 400 and "not both" in refused.text
    assert dead_queues.replays == [] and len(dead_queues.queues["emails.dead"]) == 2


def test_a_queue_name_and_a_task_id_with_a_slash_open_replay_and_purge() -> None:
    dead_queues = MemoryDeadQueues({"billing/emails.dead": [dead_letter("import/42")]})
    with dashboard(dead_queues=dead_queues) as client:
        listing = client.get("/dead/billing%2Femails")
        assert listing.status_code == 200 and "import/42" in listing.text
        letter_link = "/dead/billing%2Femails.dead/letters/import%2F42"
        assert f'href="{letter_link}"' in listing.text
        assert 'href="/dead/billing%2Femails.dead/purge"' in listing.text
        letter = client.get(letter_link)
        assert letter.status_code == 200 and "import/42" in letter.text
        assert 'href="/dead/billing%2Femails.dead/replay?id=import%2F42"' in letter.text
        confirm = client.get("/dead/billing%2Femails.dead/replay?id=import%2F42")
        assert 'action="/dead/billing%2Femails.dead/replay"' in confirm.text
        done = client.post(
            "/dead/billing%2Femails.dead/replay",
            data={"csrf": csrf_of(confirm.text), "id": "import/42", "confirm": "yes"},
        )
        assert "Replayed 1 dead letter(s)" in done.text
        purged = client.post(
            "/dead/billing%2Femails.dead/purge",
            data={"csrf": csrf_of(confirm.text), "confirm": "yes"},
        )
        assert purged.status_code == 200
    assert dead_queues.purges == ["billing/emails.dead"]


def test_a_percent_sign_in_a_queue_name_is_kept_as_it_is() -> None:
    """A queue literally named "a%2Fb" is not the queue "a/b"."""
    dead_queues = MemoryDeadQueues({"a%2Fb.dead": [dead_letter("id-1")], "a/b.dead": []})
    with dashboard(dead_queues=dead_queues) as client:
        page = client.get("/dead/a%252Fb")
        assert page.status_code == 200 and "id-1" in page.text
        assert 'href="/dead/a%252Fb.dead/letters/id-1"' in page.text
    assert dead_queues.opened == ["a%2Fb.dead"]


def test_the_status_source_is_closed_with_the_app() -> None:
    status = FixedStatus()
    with dashboard(status=status):
        pass
    assert status.closed


def test_metrics_serves_the_queue_gauges_of_the_same_snapshot() -> None:
    with dashboard() as client:
        scrape = client.get("/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    assert "rabbitq_status_up 1.0" in scrape.text
    assert 'queue="emails"' in scrape.text
