"""State store URLs as they may be shown: in messages, events and errors."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["display_url"]


def display_url(url: str) -> str:
    """``url`` without a password, fit for messages and events."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" if parts.username else f":***@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
