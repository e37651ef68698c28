"""What the dashboard was started with, and the rule for where it may listen (pure).

Safe by default: on a loopback address only this machine can reach the dashboard; anywhere
else it answers nobody without the token, so a dashboard that can replay and purge dead
letters is never open to a network by a mistyped ``--bind``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
TOKEN_ENV = "RABBITQ_DASHBOARD_TOKEN"


@dataclass(frozen=True)
class DashboardConfig:
    broker_url: str
    management_url: str | None = None
    flower_url: str | None = None  # links to Flower's pages when given
    token: str | None = None  # every request must carry it, when set
    bind: str = "127.0.0.1"

    @property
    def flower(self) -> str | None:
        return self.flower_url.rstrip("/") if self.flower_url else None

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """Host headers to answer (without the port, as ``TrustedHostMiddleware`` compares
        them). Without a token, only loopback names, and the bind address when it is a
        loopback IP (``--bind 127.0.0.2``): a page elsewhere that points a DNS name at
        127.0.0.1 (DNS rebinding) must not be able to read the dashboard, nor its CSRF
        token."""
        if self.token:
            return ("*",)
        hosts = ["localhost", "127.0.0.1", "[::1]", "::1"]
        for host in _loopback_ip_hosts(self.bind):
            if host not in hosts:
                hosts.append(host)
        return tuple(hosts)


def _loopback_ip_hosts(bind: str) -> list[str]:
    """How a Host header names ``bind``, when it is a loopback IP: as given and in its
    normal form, an IPv6 one in brackets (``[::1]``)."""
    try:
        address = ipaddress.ip_address(bind.strip("[]"))
    except ValueError:
        return []  # a name: localhost is allowed already, and no other name is
    if not address.is_loopback:
        return []
    forms = dict.fromkeys([bind.strip("[]").lower(), address.compressed])
    return [f"[{form}]" if address.version == 6 else form for form in forms]


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve anywhere


def bind_refusal(bind: str, token: str | None) -> str | None:
    """Why the dashboard must not listen on ``bind``, or None."""
    if is_loopback(bind) or token:
        return None
    return (
        f"refusing to listen on {bind}, which is not a loopback address, without a token: "
        f"anyone who reaches it could replay and purge dead letters. Set ${TOKEN_ENV} "
        "(or --token), or bind to 127.0.0.1"
    )
