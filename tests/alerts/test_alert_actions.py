"""Actions: structlog events, printed lines, callbacks, webhooks against a local server."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from prismq_llmtools.alerts.actions import (
    PrintAction,
    StructlogAction,
    ThreadedAction,
    WebhookAction,
    slack_payload,
)
from prismq_llmtools.alerts.alert import Alert

ALERT = Alert(
    rule="spend", state="fired", severity="critical", value=12.5, threshold=10.0,
    group={"site": "app.a"}, labels={"team": "ml"}, message="spend 12.5 > 10", at=1795478400.0,
)  # fmt: skip


class Hook:
    """A local webhook receiver answering with scripted status codes ('hang' never answers)."""

    def __init__(self, script: list[int | str]) -> None:
        self.script = script
        self.bodies: list[Any] = []
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append(json.loads(body))
                status = hook.script.pop(0) if hook.script else 200
                if status == "hang":
                    hook.release.wait(60)  # (released when the test ends)
                    return
                self.send_response(int(status))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_factory() -> Iterator[Any]:
    hooks: list[Hook] = []

    def make(script: list[int | str]) -> Hook:
        hooks.append(Hook(script))
        return hooks[-1]

    yield make
    for hook in hooks:
        hook.close()


def test_webhook_posts_the_alert_event(hook_factory: Any) -> None:
    """A delivered alert is the JSON event of the schema."""
    hook = hook_factory([200])
    action = WebhookAction(hook.url)
    action(ALERT)
    assert hook.bodies == [ALERT.to_event()]
    assert hook.bodies[0]["event"] == "alert.fired"
    assert (action.delivered, action.failed) == (1, 0)


def test_webhook_retries_5xx_then_succeeds(hook_factory: Any) -> None:
    """500 and 503 are retried with exponential backoff (injected sleep), then 200 delivers."""
    hook = hook_factory([500, 503, 200])
    waits: list[float] = []
    action = WebhookAction(hook.url, retries=3, backoff_s=0.5, sleep=waits.append)
    action(ALERT)
    assert len(hook.bodies) == 3
    assert waits == [0.5, 1.0]
    assert (action.delivered, action.failed, action.last_error) == (1, 0, "HTTP 503")


def test_webhook_gives_up_after_retries(hook_factory: Any) -> None:
    """Persistent 5xx raises after the last retry and counts a failure."""
    hook = hook_factory([502, 502, 502])
    waits: list[float] = []
    action = WebhookAction(hook.url, retries=2, backoff_s=1, sleep=waits.append)
    with pytest.raises(urllib.error.HTTPError):
        action(ALERT)
    assert (len(hook.bodies), waits, action.failed) == (3, [1, 2], 1)


def test_webhook_does_not_retry_4xx(hook_factory: Any) -> None:
    """A 400 or 404 is not transient: one attempt, no sleep."""
    hook = hook_factory([404])
    waits: list[float] = []
    with pytest.raises(urllib.error.HTTPError):
        WebhookAction(hook.url, sleep=waits.append)(ALERT)
    assert (len(hook.bodies), waits) == (1, [])


def test_webhook_timeout_is_retried(hook_factory: Any) -> None:
    """A server that does not answer within the timeout is retried; the next answer counts."""
    hook = hook_factory(["hang", 200])
    waits: list[float] = []
    action = WebhookAction(hook.url, timeout_s=1, retries=1, backoff_s=0, sleep=waits.append)
    action(ALERT)
    assert (len(hook.bodies), action.delivered) == (2, 1)
    assert action.last_error is not None
    assert "timed out" in action.last_error


def test_webhook_connection_refused(hook_factory: Any) -> None:
    """Nobody listening: retried, then raised."""
    hook = hook_factory([])
    url = hook.url
    hook.close()
    waits: list[float] = []
    with pytest.raises(urllib.error.URLError):
        WebhookAction(url, retries=1, backoff_s=0.1, sleep=waits.append)(ALERT)
    assert waits == [0.1]


def test_slack_payload(hook_factory: Any) -> None:
    """The Slack format carries a text line and a coloured attachment with group and value."""
    hook = hook_factory([200])
    WebhookAction(hook.url, slack=True)(ALERT)
    body = hook.bodies[0]
    assert body == slack_payload(ALERT)
    assert body["text"] == "FIRING [critical] spend"
    attachment = body["attachments"][0]
    assert attachment["text"] == "spend 12.5 > 10"
    assert {"title": "site", "value": "app.a", "short": True} in attachment["fields"]


def test_webhook_rejects_other_schemes() -> None:
    """Only http(s) URLs are accepted."""
    with pytest.raises(ValueError, match="http"):
        WebhookAction("file:///etc/passwd")


def test_threaded_action_delivers_in_background(hook_factory: Any) -> None:
    """A threaded webhook returns at once and delivers by close()."""
    hook = hook_factory([200, 200])
    threaded = ThreadedAction(WebhookAction(hook.url))
    threaded(ALERT)
    threaded(ALERT)
    threaded.close(timeout_s=60)  # (a limit for a hung delivery, not a speed bound)
    assert (len(hook.bodies), threaded.errors, threaded.dropped) == (2, 0, 0)


def test_structlog_action_emits_schema_events() -> None:
    """Fired critical alerts log at error, resolved ones at info, with the schema fields."""
    action = StructlogAction(structlog.get_logger("test"))
    resolved = Alert(rule="spend", state="resolved", severity="warning", value=None, threshold=1.0)
    with capture_logs() as logs:
        action(ALERT)
        action(resolved)
    assert logs[0]["event"] == "alert.fired"
    assert logs[0]["log_level"] == "error"
    assert (logs[0]["rule"], logs[0]["value"], logs[0]["group"]) == (
        "spend",
        12.5,
        {"site": "app.a"},
    )
    assert (logs[1]["event"], logs[1]["log_level"]) == ("alert.resolved", "info")
    assert "value" not in logs[1]


def test_print_action_human_and_json() -> None:
    """Printed alerts are one readable line, or one JSON object per line."""
    human, machine = io.StringIO(), io.StringIO()
    PrintAction(human)(ALERT)
    PrintAction(machine, json=True)(ALERT)
    assert human.getvalue() == "2026-11-24T00:00:00.000000Z FIRED [critical] spend 12.5 > 10\n"
    assert json.loads(machine.getvalue()) == ALERT.to_event()
