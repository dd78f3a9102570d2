"""A small HTTP/1.1 server on asyncio streams and h11: keep-alive, chunked streams, drops.

The application is one coroutine ``handler(request) -> reply``; a reply is a complete
:class:`Reply`, a :class:`StreamReply` (chunked, optionally cut off before its end), or
:data:`DROP` (close the socket without answering).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import h11

__all__ = ["DROP", "Drop", "Handler", "Reply", "Request", "StreamReply", "serve_connection"]

Headers = list[tuple[str, str]]
_READ_SIZE: Final = 65_536


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, body read in full."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


@dataclass(slots=True)
class Reply:
    """A complete response."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Headers = field(default_factory=list)


@dataclass(slots=True)
class StreamReply:
    """A chunked response; ``cut`` closes the connection instead of ending the body."""

    status: int
    chunks: AsyncGenerator[bytes, None]
    content_type: str = "text/event-stream; charset=utf-8"
    headers: Headers = field(default_factory=list)
    cut: bool = False


class Drop:
    """Close the connection without a response."""


DROP: Final = Drop()

Handler = Callable[[Request], Awaitable[Reply | StreamReply | Drop]]


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    *,
    max_body_bytes: int,
) -> None:
    """Serve requests on one connection until either side closes it."""
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            try:
                request = await _read_request(conn, reader, max_body_bytes)
            except h11.RemoteProtocolError as exc:
                await _send_bad_request(conn, writer, exc)
                return
            if request is None:
                return
            reply = await handler(request)
            if isinstance(reply, Drop):
                writer.transport.abort()
                return
            if not await _send(conn, writer, reply):
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader, max_body_bytes: int
) -> Request | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(_READ_SIZE))
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body_bytes:
                raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None  # h11 yields a Request before any body event
            return _request(head, bytes(body))
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


def _request(head: h11.Request, body: bytes) -> Request:
    target = urlsplit(head.target.decode("latin-1"))
    return Request(
        method=head.method.decode("ascii").upper(),
        path=target.path,
        query=dict(parse_qsl(target.query)),
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers},
        body=body,
    )


async def _send(
    conn: h11.Connection, writer: asyncio.StreamWriter, reply: Reply | StreamReply
) -> bool:
    """Write a reply; False when the connection must close (a cut stream, a gone client)."""
    if writer.is_closing():
        return False
    headers = [("content-type", reply.content_type), *reply.headers]
    if isinstance(reply, Reply):
        headers.append(("content-length", str(len(reply.body))))
        data = conn.send(h11.Response(status_code=reply.status, headers=headers))
        data += conn.send(h11.Data(data=reply.body)) if reply.body else b""
        data += conn.send(h11.EndOfMessage())
        writer.write(data)
        await writer.drain()
        return True
    writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)))
    async with contextlib.aclosing(reply.chunks) as chunks:
        async for chunk in chunks:
            if writer.is_closing():
                return False
            writer.write(conn.send(h11.Data(data=chunk)))
            await writer.drain()
    if reply.cut:
        writer.transport.abort()
        return False
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()
    return True


async def _send_bad_request(
    conn: h11.Connection, writer: asyncio.StreamWriter, exc: h11.RemoteProtocolError
) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = b'{"error": {"message": "malformed HTTP request", "type": "invalid_request_error"}}'
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
        data = conn.send(h11.Response(status_code=exc.error_status_hint, headers=headers))
        writer.write(data + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        await writer.drain()
