"""Service URLs that carry credentials: the one place that puts a user and password into a
URL and the one place that takes the password out again for messages and logs.

Every message, log line and status line that names a Redis/Valkey or NATS server shows
`redact_url(url)`, never the URL itself.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit


def _host(netloc_host: str | None, port: int | None) -> str:
    host = netloc_host or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}" if port is not None else host


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:  # not a URL we can take apart: show none of what may be in it
        return "<url>"
    if password is None:
        return url
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{_host(parts.hostname, port)}"))


def with_credentials(url: str, user: str, password: str) -> str:
    """`url` logging in as `user` with `password` (both percent-encoded), replacing any
    credentials it had: redis://u:p@host:port/0, nats://u:p@host:port."""
    parts = urlsplit(url)
    login = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{login}@{_host(parts.hostname, parts.port)}"))


def url_user(url: str) -> str:
    """The user a URL logs in as ("" without one)."""
    try:
        return urlsplit(url).username or ""
    except ValueError:
        return ""


def inbox_prefix(user: str) -> str:
    """The NATS inbox prefix of `user`'s replies (`_INBOX` for an anonymous connection):
    each user may subscribe to its own replies only."""
    return f"_INBOX.{user}" if user else "_INBOX"


def nats_inbox_prefix(url: str) -> str:
    """The inbox prefix of a NATS client that connects with `url`."""
    return inbox_prefix(url_user(url))
