"""TLS settings, from Celery's ``broker_use_ssl`` to an ``ssl.SSLContext`` (pure but for
reading the certificate files).

``broker_use_ssl`` is ``True`` (TLS, the system's CAs, the server name checked) or a dict of
Celery's keys: ``ca_certs``, ``certfile``, ``keyfile``, ``cert_reqs`` (``ssl.CERT_REQUIRED``,
``CERT_OPTIONAL``, ``CERT_NONE`` or their names), and ``server_hostname`` (the name the
certificate must carry, when the URL's host is an address) and ``check_hostname``. An unknown
key is refused: a typo must not quietly turn verification off.

The settings travel in the broker URL's query (``amqps://host/?ca_certs=/etc/ca.pem``), as
libpq's ``sslrootcert`` and redis-py's ``ssl_ca_certs`` do: every process and command that
is handed the URL (a beat, ``rabbitq status --broker``, an exported ``RABBITQ_BROKER_URL``)
reaches the broker the same way, and ``amqp/connection_parameters.py`` reads them back before
any client library sees the URL. Paths are no secret; the URL's password is redacted wherever
it is shown (``redaction.py``).
"""

from __future__ import annotations

import dataclasses
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any

from rabbitq.errors import ConfigurationError

TLS_KEYS = ("ca_certs", "certfile", "keyfile", "cert_reqs", "server_hostname", "check_hostname")

_CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}


@dataclasses.dataclass(frozen=True)
class TlsSettings:
    """How to make a TLS connection; the defaults verify the peer against the system's CAs."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    cert_reqs: ssl.VerifyMode = ssl.CERT_REQUIRED
    server_hostname: str | None = None
    check_hostname: bool = True

    def query(self) -> dict[str, str]:
        """The settings that differ from the defaults, as URL query parameters."""
        found: dict[str, str] = {}
        for key in ("ca_certs", "certfile", "keyfile", "server_hostname"):
            value = getattr(self, key)
            if value is not None:
                found[key] = value
        if self.cert_reqs != ssl.CERT_REQUIRED:
            found["cert_reqs"] = _cert_reqs_name(self.cert_reqs)
        if not self.check_hostname:
            found["check_hostname"] = "false"
        return found


def tls_settings(
    use_ssl: bool | Mapping[str, Any] | None, what: str = "broker_use_ssl"
) -> TlsSettings | None:
    """``broker_use_ssl`` checked: None when TLS is not asked for (an ``amqps://`` URL still
    asks for it)."""
    if use_ssl is None or use_ssl is False:
        return None
    if use_ssl is True:
        return TlsSettings()
    if not isinstance(use_ssl, Mapping):
        raise ConfigurationError(
            f"{what} must be True, False or a dict of {', '.join(TLS_KEYS)}; got {use_ssl!r}"
        )
    unknown = sorted(set(use_ssl) - set(TLS_KEYS))
    if unknown:
        raise ConfigurationError(
            f"{what}: unknown key(s) {', '.join(map(repr, unknown))}; rabbitq knows "
            f"{', '.join(TLS_KEYS)}"
        )
    for key in ("ca_certs", "certfile", "keyfile", "server_hostname"):
        value = use_ssl.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigurationError(f"{what}[{key!r}] must be a non-empty string, got {value!r}")
    if use_ssl.get("keyfile") and not use_ssl.get("certfile"):
        raise ConfigurationError(f"{what}: keyfile without certfile (the client certificate)")
    return TlsSettings(
        ca_certs=use_ssl.get("ca_certs"),
        certfile=use_ssl.get("certfile"),
        keyfile=use_ssl.get("keyfile"),
        cert_reqs=_cert_reqs(use_ssl.get("cert_reqs", ssl.CERT_REQUIRED), what),
        server_hostname=use_ssl.get("server_hostname"),
        check_hostname=_flag(use_ssl.get("check_hostname", True), f"{what}['check_hostname']"),
    )


def tls_from_query(query: Mapping[str, str], what: str) -> TlsSettings:
    """The settings a URL's query carries (``TlsSettings.query``'s inverse)."""
    found: dict[str, Any] = {key: query[key] for key in TLS_KEYS if key in query}
    return tls_settings(found, what) or TlsSettings()


def split_query(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its TLS parameters, and those parameters (others stay in the URL)."""
    parts = urllib.parse.urlsplit(url)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    tls = {key: value for key, value in pairs if key in TLS_KEYS}
    rest = [(key, value) for key, value in pairs if key not in TLS_KEYS]
    query = urllib.parse.urlencode(rest, safe="/")
    return urllib.parse.urlunsplit(parts._replace(query=query)), tls


def with_query(url: str, settings: TlsSettings, what: str) -> str:
    """``url`` with ``settings`` in its query; a key the URL already sets otherwise is refused."""
    base, present = split_query(url)
    wanted = settings.query()
    for key, value in wanted.items():
        if key in present and present[key] != value:
            raise ConfigurationError(
                f"{what}[{key!r}] is {value!r} but the broker URL says {key}={present[key]!r}"
            )
    merged = {**present, **wanted}
    if not merged:
        return url
    parts = urllib.parse.urlsplit(base)
    extra = urllib.parse.urlencode(merged, safe="/")
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urllib.parse.urlunsplit(parts._replace(query=query))


def ssl_context(settings: TlsSettings) -> ssl.SSLContext:
    """A client context for ``settings``; a certificate file that cannot be read is a
    ``ConfigurationError`` naming it."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_certs)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot read ca_certs {settings.ca_certs!r}: {exc}") from None
    if settings.certfile is not None:
        try:
            context.load_cert_chain(settings.certfile, settings.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot read the client certificate {settings.certfile!r}"
                f"{f' / key {settings.keyfile!r}' if settings.keyfile else ''}: {exc}"
            ) from None
    # check_hostname must be off before verification can be.
    context.check_hostname = settings.check_hostname and settings.cert_reqs != ssl.CERT_NONE
    context.verify_mode = settings.cert_reqs
    return context


def tls_failure(error: BaseException | None) -> ssl.SSLError | None:
    """The TLS error behind a connection error, if one is (client libraries wrap it, and
    pika sometimes keeps only its text: a broker's alert after the handshake, such as
    ``TLSV13_ALERT_CERTIFICATE_REQUIRED``, reaches it as a lost stream)."""
    seen: set[int] = set()
    quoted: str | None = None
    while error is not None and id(error) not in seen:
        if isinstance(error, ssl.SSLError):
            return error
        seen.add(id(error))
        if quoted is None:
            quoted = _quoted_ssl_error(str(error))
        nested = next((arg for arg in error.args if isinstance(arg, BaseException)), None)
        error = nested or error.__cause__ or error.__context__
    return ssl.SSLError(quoted) if quoted is not None else None


# The ssl module's words when the peer ends TLS abruptly: under TLS 1.3 a broker refusing a
# client without a certificate may just close, and pika keeps only the text of what it saw.
SSL_EOF = "EOF occurred in violation of protocol"


def _quoted_ssl_error(text: str) -> str | None:
    """``[SSL: NAME] words`` (or the ssl module's abrupt-EOF words) from an error's text, if
    it quotes them."""
    start = text.find("[SSL: ")
    if start < 0:
        return SSL_EOF if SSL_EOF in text else None
    end = text.find("(_ssl.c", start)
    return text[start : end if end > 0 else None].strip()


def describe_tls_failure(error: ssl.SSLError, where: str, settings: TlsSettings | None) -> str:
    """One sentence an operator can act on."""
    reason = getattr(error, "verify_message", None) or getattr(error, "reason", None) or error
    trusted = (
        f"ca_certs={settings.ca_certs}"
        if settings is not None and settings.ca_certs
        else "the system's CAs"
    )
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"TLS to {where} failed: its certificate is not trusted ({reason}); it was checked "
            f"against {trusted} (broker_use_ssl's ca_certs)"
        )
    return f"TLS to {where} failed ({reason}): does it require a client certificate (certfile)?"


def _cert_reqs(value: Any, what: str) -> ssl.VerifyMode:
    if isinstance(value, ssl.VerifyMode):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return ssl.VerifyMode(value)
        except ValueError:
            pass
    if isinstance(value, str):
        name = value.lower().removeprefix("cert_")
        if name in _CERT_REQS:
            return _CERT_REQS[name]
    raise ConfigurationError(
        f"{what}['cert_reqs'] must be ssl.CERT_REQUIRED, CERT_OPTIONAL or CERT_NONE, got {value!r}"
    )


def _cert_reqs_name(mode: ssl.VerifyMode) -> str:
    return next(name for name, known in _CERT_REQS.items() if known == mode)


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ConfigurationError(f"{what} must be True or False, got {value!r}")
