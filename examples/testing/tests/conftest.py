from __future__ import annotations

from collections.abc import Callable

import pytest
from shop import tasks


class FakeMailer:
    """Records what was sent; ``down_for`` calls fail first, as an outage would."""

    def __init__(self, down_for: int = 0) -> None:
        self.sent: list[tuple[str, str]] = []
        self.down_for = down_for
        self.calls = 0

    def send(self, to: str, subject: str) -> None:
        self.calls += 1
        if self.calls <= self.down_for:
            raise tasks.MailerDown("gateway timeout")
        self.sent.append((to, subject))


@pytest.fixture
def mailer(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeMailer]:
    """``mailer(down_for=2)``: the fake in place of the real gateway for this test."""

    def install(down_for: int = 0) -> FakeMailer:
        fake = FakeMailer(down_for)
        monkeypatch.setattr(tasks, "mailer", fake)
        return fake

    return install
