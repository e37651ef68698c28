"""The dashboard's security model, without a broker: loopback by default, a token elsewhere,
CSRF on every POST, nothing changed by a GET, nothing read through another host name."""

from __future__ import annotations

import httpx
import pytest
from click.testing import CliRunner
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rabbitq.cli.main import cli
from rabbitq.dashboard.app import create_app
from rabbitq.dashboard.auth import safe_next
from rabbitq.dashboard.config import DashboardConfig, bind_refusal, is_loopback
from rabbitq.dashboard.security_headers import SECURITY_HEADERS
from rabbitq.dashboard.sessions import SESSION_MAX_AGE, Session, SessionSigner
from tests.dashboard_support import (
    TOKEN,
    Clock,
    FixedStatus,
    MemoryDeadQueues,
    TestClient,
    csrf_of,
    dashboard,
    dead_letter,
)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_addresses_need_no_token(host: str) -> None:
    assert is_loopback(host) and bind_refusal(host, None) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "dashboard.example.com"])
def test_any_other_address_is_refused_without_a_token(host: str) -> None:
    refusal = bind_refusal(host, None)
    assert refusal is not None and "RABBITQ_DASHBOARD_TOKEN" in refusal
    assert bind_refusal(host, TOKEN) is None


def test_the_command_refuses_a_non_loopback_bind_without_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RABBITQ_DASHBOARD_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["dashboard", "--bind", "0.0.0.0"])
    assert result.exit_code == 2
    assert "not a loopback address" in result.output and "RABBITQ_DASHBOARD_TOKEN" in result.output


def test_an_empty_token_in_the_environment_is_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITQ_DASHBOARD_TOKEN", "")
    result = CliRunner().invoke(cli, ["dashboard", "--bind", "0.0.0.0"])
    assert result.exit_code == 2 and "not a loopback address" in result.output


def test_without_a_token_pages_answer_only_loopback_host_names() -> None:
    """DNS rebinding: a page at evil.example resolving to 127.0.0.1 must read nothing."""
    config = DashboardConfig("amqp://127.0.0.1:1/")
    app = create_app(config, FixedStatus(), dead_queues=MemoryDeadQueues())  # type: ignore[arg-type]
    with TestClient(app, base_url="http://evil.example") as client:
        assert client.get("/api/status").status_code == 400
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        assert client.get("/api/status").status_code == 200


@pytest.mark.parametrize(
    ("bind", "base_url"),
    [
        ("127.0.0.2", "http://127.0.0.2:8080"),
        ("127.1.2.3", "http://127.1.2.3:9000"),
        ("0:0:0:0:0:0:0:1", "http://[::1]:8080"),
        ("0:0:0:0:0:0:0:1", "http://[0:0:0:0:0:0:0:1]:8080"),
    ],
)
def test_a_loopback_bind_answers_its_own_address_as_host(bind: str, base_url: str) -> None:
    config = DashboardConfig("amqp://127.0.0.1:1/", bind=bind)
    app = create_app(config, FixedStatus(), dead_queues=MemoryDeadQueues())  # type: ignore[arg-type]
    with TestClient(app, base_url=base_url) as client:
        assert client.get("/api/status").status_code == 200
    with TestClient(app, base_url="http://evil.example") as client:
        assert client.get("/api/status").status_code == 400


def test_only_a_loopback_bind_address_is_added_to_the_host_names() -> None:
    assert "127.0.0.2" in DashboardConfig("amqp://x/", bind="127.0.0.2").allowed_hosts
    for bind in ("10.1.2.3", "0.0.0.0", "dashboard.example.com"):
        assert bind not in DashboardConfig("amqp://x/", bind=bind).allowed_hosts


def test_with_a_token_a_request_without_it_is_refused() -> None:
    with dashboard(token=TOKEN) as client:
        api = client.get("/api/status")
        assert api.status_code == 401 and "token" in api.json()["error"]
        page = client.get("/dead/emails")
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")


def test_a_wrong_bearer_token_is_refused_and_the_right_one_admitted() -> None:
    with dashboard(token=TOKEN) as client:
        wrong = client.get("/api/status", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200 and right.json()["totals"]["dead_letters"] == 1


def test_logging_in_with_the_token_admits_the_session() -> None:
    with dashboard(token=TOKEN) as client:
        form = client.get("/login?next=/api/status")
        assert form.status_code == 200
        csrf = csrf_of(form.text)
        refused = client.post("/login", data={"csrf": csrf, "token": "nope", "next": "/"})
        assert refused.status_code == 401 and client.get("/api/status").status_code == 401
        login = client.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "/api/status"})
        assert login.status_code == 303 and login.headers["location"] == "/api/status"
        assert client.get("/api/status").status_code == 200


def test_logging_out_ends_the_session() -> None:
    with dashboard(token=TOKEN) as client:
        csrf = csrf_of(client.get("/login").text)
        client.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "/"})
        page = client.get("/")
        client.post("/logout", data={"csrf": csrf_of(page.text)})
        assert client.get("/api/status").status_code == 401


def test_a_login_without_the_csrf_token_is_refused() -> None:
    with dashboard(token=TOKEN) as client:
        client.get("/login")
        refused = client.post("/login", data={"token": TOKEN, "next": "/"})
        assert refused.status_code == 403
        assert client.get("/api/status").status_code == 401


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil", ""])
def test_after_login_only_a_path_of_the_dashboard_is_followed(target: str) -> None:
    assert safe_next(target) == "/"


@pytest.mark.parametrize("target", ["/\t/evil.com", "/\n/evil.com", "/\r\n/x", "/\x00", "/a\x7f"])
def test_after_login_a_path_with_a_control_character_is_not_followed(target: str) -> None:
    """Browsers drop tabs and newlines from URLs: "/<tab>/evil.com" is "//evil.com"."""
    assert safe_next(target) == "/"
    assert safe_next("/dead/emails?all=1") == "/dead/emails?all=1"


def _post_routes() -> list[str]:
    app = create_app(DashboardConfig("amqp://127.0.0.1:1/"), FixedStatus())
    return sorted(
        route.path.replace("{queue}", "emails")
        for route in app.routes
        if isinstance(route, Route) and "POST" in (route.methods or ())
    )


def test_every_post_refuses_a_missing_or_wrong_csrf_token() -> None:
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1")]})
    paths = _post_routes()
    assert "/dead/emails/replay" in paths and "/dead/emails/purge" in paths
    with dashboard(dead_queues=dead_queues) as client:
        client.get("/")
        for path in paths:
            form = {"confirm": "yes", "all": "1", "token": TOKEN}
            assert client.post(path, data=form).status_code == 403, path
            assert client.post(path, data={**form, "csrf": "0" * 64}).status_code == 403, path
    assert dead_queues.replays == [] and dead_queues.purges == []
    assert len(dead_queues.queues["emails.dead"]) == 1


def test_a_csrf_token_of_another_session_is_refused() -> None:
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1")]})
    with dashboard(dead_queues=dead_queues) as other:
        stolen = csrf_of(other.get("/dead/emails/purge").text)
    with dashboard(dead_queues=dead_queues) as client:
        client.get("/")
        refused = client.post("/dead/emails/purge", data={"csrf": stolen, "confirm": "yes"})
        assert refused.status_code == 403
    assert dead_queues.purges == []


def test_a_bearer_request_needs_no_csrf_token() -> None:
    """A browser never adds an Authorization header by itself, so it cannot be forged."""
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1")]})
    with dashboard(token=TOKEN, dead_queues=dead_queues) as client:
        done = client.post(
            "/dead/emails/purge",
            data={"confirm": "yes"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert done.status_code == 200
    assert dead_queues.purges == ["emails.dead"]


def test_a_get_never_changes_anything() -> None:
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1")]})
    with dashboard(dead_queues=dead_queues) as client:
        assert client.get("/dead/emails/replay?all=1").status_code == 200
        assert client.get("/dead/emails/purge").status_code == 200
    assert dead_queues.replays == [] and dead_queues.purges == []


def test_a_forged_or_altered_session_cookie_is_not_believed() -> None:
    clock = Clock()
    signer = SessionSigner(b"k" * 32, clock=clock)
    session = signer.new()
    cookie = signer.dump(session)
    assert signer.load(cookie) == session
    assert signer.load(cookie.replace(".0.", ".1.")) is None
    moved = signer.dump(Session(session.id, False, session.issued_at + 3600)).rsplit(".", 1)[0]
    assert signer.load(moved + "." + cookie.rsplit(".", 1)[1]) is None  # issued-at moved on
    assert SessionSigner(b"other" * 8, clock=clock).load(cookie) is None
    assert signer.load("garbage") is None
    assert signer.load("a.1.é.b") is None


def test_a_session_is_not_believed_twelve_hours_after_it_was_issued() -> None:
    clock = Clock()
    signer = SessionSigner(b"k" * 32, clock=clock)
    session = signer.new(logged_in=True)
    cookie = signer.dump(session)
    clock.now += SESSION_MAX_AGE
    assert signer.load(cookie) == session and SESSION_MAX_AGE == 12 * 3600
    clock.now += 1
    assert signer.load(cookie) is None


def test_a_session_issued_in_the_future_is_not_believed() -> None:
    clock = Clock()
    signer = SessionSigner(b"k" * 32, clock=clock)
    cookie = signer.dump(signer.new(logged_in=True))
    clock.now -= 3600
    assert signer.load(cookie) is None


def test_a_login_older_than_twelve_hours_asks_for_the_token_again() -> None:
    clock = Clock()
    with dashboard(token=TOKEN, signer=SessionSigner(clock=clock)) as client:
        csrf = csrf_of(client.get("/login").text)
        client.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "/"})
        assert client.get("/api/status").status_code == 200
        clock.now += SESSION_MAX_AGE + 1
        assert client.get("/api/status").status_code == 401
        assert client.get("/").headers["location"] == "/login?next=%2F"


def test_the_session_cookie_expires_with_the_session() -> None:
    with dashboard() as client:
        cookie = client.get("/").headers["set-cookie"].lower()
    assert f"max-age={SESSION_MAX_AGE}" in cookie


def test_pages_may_not_be_framed() -> None:
    with dashboard() as client:
        headers = client.get("/").headers
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_the_session_cookie_is_http_only_and_same_site_strict() -> None:
    with dashboard() as client:
        cookie = client.get("/").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_with_a_token_metrics_needs_it_too() -> None:
    with dashboard(token=TOKEN) as client:
        assert client.get("/metrics").status_code == 401
        scrape = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scrape.status_code == 200


def _boom(_request: Request) -> Response:
    raise RuntimeError("a bug")


BOOM_ROUTES = (Route("/api/boom", _boom), Route("/boom", _boom))


def _has_security_headers(response: httpx.Response) -> bool:
    return all(response.headers.get(name) == value for name, value in SECURITY_HEADERS.items())


def test_every_response_carries_the_security_headers_refusals_and_failures_included() -> None:
    with dashboard(routes=BOOM_ROUTES, raise_server_exceptions=False) as client:
        answers = {
            "page": client.get("/"),
            "api": client.get("/api/status"),
            "static": client.get("/static/overview.js"),
            "404": client.get("/nowhere"),
            "403 csrf": client.post("/dead/emails/purge", data={"confirm": "yes"}),
            "403 cross-site": client.get("/", headers={"Sec-Fetch-Site": "cross-site"}),
            "500 api": client.get("/api/boom"),
            "500 page": client.get("/boom"),
        }
    with dashboard(token=TOKEN) as client:
        answers["401"] = client.get("/api/status")
    config = DashboardConfig("amqp://127.0.0.1:1/")
    app = create_app(config, FixedStatus(), dead_queues=MemoryDeadQueues())  # type: ignore[arg-type]
    with TestClient(app, base_url="http://evil.example") as client:
        answers["400 host"] = client.get("/")
    assert answers["500 api"].status_code == answers["500 page"].status_code == 500
    assert answers["400 host"].status_code == 400
    missing = [name for name, answer in answers.items() if not _has_security_headers(answer)]
    assert missing == []


def test_a_failure_under_api_answers_json_and_a_page_plain_text() -> None:
    with dashboard(routes=BOOM_ROUTES, raise_server_exceptions=False) as client:
        api = client.get("/api/boom")
        page = client.get("/boom")
    assert api.status_code == 500 and api.headers["content-type"] == "application/json"
    assert (
        api.json()["error"] == "The dashboard failed to answer: RuntimeError: a bug. See its log."
    )
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/plain")
    assert "Traceback" not in page.text


CROSS_SITE_PATHS = [
    "/", "/api/status", "/metrics", "/login", "/dead/emails", "/dead/emails/letters/id-1",
    "/dead/emails/replay?all=1", "/dead/emails/purge",
]  # fmt: skip


@pytest.mark.parametrize("site", ["cross-site", "same-site", "CROSS-SITE"])
def test_a_request_another_sites_page_made_is_refused_and_reads_nothing(site: str) -> None:
    """<img src="http://127.0.0.1:8080/dead/emails"> on any page must not browse a dead queue."""
    status = FixedStatus()
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1")]})
    with dashboard(status=status, dead_queues=dead_queues) as client:
        for path in CROSS_SITE_PATHS:
            refused = client.get(path, headers={"Sec-Fetch-Site": site})
            assert refused.status_code == 403, path
            assert "another site" in refused.text, path
        posted = client.post(
            "/dead/emails/purge", data={"confirm": "yes"}, headers={"Sec-Fetch-Site": site}
        )
        assert posted.status_code == 403
    assert status.collected == 0 and dead_queues.opened == [] and dead_queues.purges == []


def test_a_cross_site_refusal_under_api_is_json() -> None:
    with dashboard() as client:
        refused = client.get("/api/status", headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403 and "another site" in refused.json()["error"]


@pytest.mark.parametrize("site", [None, "same-origin", "none"])
def test_the_dashboards_own_pages_typed_addresses_and_scripts_are_answered(
    site: str | None,
) -> None:
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1")]})
    headers = {"Sec-Fetch-Site": site} if site else {}
    with dashboard(dead_queues=dead_queues) as client:
        for path in CROSS_SITE_PATHS:
            assert client.get(path, headers=headers).status_code in (200, 303), path


def test_static_files_are_served_whoever_asks() -> None:
    with dashboard() as client:
        script = client.get("/static/dashboard.css", headers={"Sec-Fetch-Site": "cross-site"})
    assert script.status_code == 200


def test_a_link_from_another_site_opens_the_overview_and_nothing_else() -> None:
    navigation = {
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "navigate",
        "Sec-Fetch-Dest": "document",
    }
    dead_queues = MemoryDeadQueues({"emails.dead": [dead_letter("id-1")]})
    with dashboard(dead_queues=dead_queues) as client:
        assert client.get("/", headers=navigation).status_code == 200
        assert client.get("/dead/emails", headers=navigation).status_code == 403
        image = {**navigation, "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
        assert client.get("/", headers=image).status_code == 403
    assert dead_queues.opened == []
