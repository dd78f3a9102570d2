"""What happens when an alert fires or resolves.

Any callable taking an :class:`~prismq_llmtools.alerts.alert.Alert` is an action (a Python
callback). Provided here: the ``alert.fired``/``alert.resolved`` event through structlog, a
line on stderr (or JSON lines on any stream), a webhook (JSON POST, optionally in Slack's
format) with timeout and retries, and a wrapper that delivers in a background thread.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from prismq_llmtools.alerts.alert import Alert
from prismq_llmtools.redaction import redact_value

__all__ = ["PrintAction", "StructlogAction", "ThreadedAction", "WebhookAction", "slack_payload"]

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class StructlogAction:
    """Log each alert as an ``alert.fired`` / ``alert.resolved`` event (schema fields).

    Fired alerts log at ``warning`` (``error`` when the severity is ``critical``), resolved
    ones at ``info``, through ``logger`` or ``structlog.get_logger("prismq_llmtools.alerts")``.
    """

    def __init__(self, logger: Any = None) -> None:
        self._logger = logger

    def __call__(self, alert: Alert) -> None:
        logger = self._logger
        if logger is None:
            import structlog

            logger = self._logger = structlog.get_logger("prismq_llmtools.alerts")
        fields = {k: redact_value(v) for k, v in alert.to_event().items()}
        event = str(fields.pop("event"))
        if alert.state == "resolved":
            logger.info(event, **fields)
        elif alert.severity == "critical":
            logger.error(event, **fields)
        else:
            logger.warning(event, **fields)


class PrintAction:
    """Write one line per alert to ``stream`` (default: stderr at call time).

    With ``json=True`` the line is the alert as a JSON event, for machines.
    """

    def __init__(self, stream: IO[str] | None = None, *, json: bool = False) -> None:
        self._stream = stream
        self._json = json

    def __call__(self, alert: Alert) -> None:
        stream = self._stream or sys.stderr
        if self._json:
            stream.write(json.dumps(alert.to_event(), default=str, allow_nan=False) + "\n")
        else:
            when = alert.to_event()["evaluated_at"]
            label = "FIRED" if alert.state == "fired" else "RESOLVED"
            again = " (repeat)" if alert.repeat else ""
            stream.write(f"{when} {label}{again} [{alert.severity}] {alert.message}\n")
        stream.flush()


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook message for ``alert`` (``text`` plus a coloured attachment)."""
    colour = {"critical": "#d00000", "warning": "#e8a317", "info": "#439fe0"}
    fired = alert.state == "fired"
    fields = [
        {"title": key, "value": str(value), "short": True} for key, value in alert.group.items()
    ]
    if alert.value is not None:
        fields.append({"title": "value", "value": f"{alert.value:.6g}", "short": True})
    return {
        "text": f"{'FIRING' if fired else 'RESOLVED'} [{alert.severity}] {alert.rule}",
        "attachments": [
            {
                "color": colour.get(alert.severity, "#888888") if fired else "#2eb886",
                "text": alert.message,
                "fields": fields,
                "ts": int(alert.at),
            }
        ],
    }


class WebhookAction:
    """POST each alert as JSON to ``url``, with a timeout and retries.

    Retries connection errors, timeouts, 408/425/429 and 5xx with exponential backoff
    (``backoff_s * 2**n``, through the injectable ``sleep``); other 4xx fail at once. After the
    last attempt the error is raised, so the engine counts it in ``stats.action_errors``; the
    action keeps ``delivered`` and ``failed`` counts and ``last_error``.

    Args:
        slack: send :func:`slack_payload` instead of the alert's event fields.
        headers: extra request headers (e.g. an ``Authorization`` token).
    """

    def __init__(
        self,
        url: str,
        *,
        slack: bool = False,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s): {url!r}")
        if retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("retries and backoff_s must be >= 0 and timeout_s > 0")
        self.url = url
        self.slack = slack
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self._sleep = sleep
        self.delivered = 0
        self.failed = 0
        self.last_error: str | None = None

    def __call__(self, alert: Alert) -> None:
        import urllib.error  # here, not at import: most users never send a webhook

        payload = slack_payload(alert) if self.slack else alert.to_event()
        body = json.dumps(payload, default=str, allow_nan=False).encode()
        for attempt in range(self.retries + 1):
            try:
                self._post(body)
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                self.last_error = _describe(exc)
                if isinstance(exc, urllib.error.HTTPError):
                    exc.close()  # it holds the response body open
                if attempt == self.retries or not _retryable(exc):
                    self.failed += 1
                    raise
                self._sleep(self.backoff_s * 2**attempt)
            else:
                self.delivered += 1
                return

    def _post(self, body: bytes) -> None:
        import urllib.request

        # the scheme was checked to be http(s) in __init__
        request = urllib.request.Request(self.url, body, self.headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
            response.read()


def _retryable(exc: BaseException) -> bool:
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in _RETRY_STATUS or exc.code >= 500
    return True  # connection refused or reset, DNS, timeouts


def _describe(exc: BaseException) -> str:
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    return f"{type(exc).__name__}: {exc}"


class ThreadedAction:
    """Run another action in a background thread, so a slow webhook never blocks the caller.

    Alerts queue up to ``max_pending``; beyond that they are dropped and counted. Call
    :meth:`close` to deliver what is queued and stop the thread.
    """

    def __init__(self, action: Callable[[Alert], None], *, max_pending: int = 1000) -> None:
        self._action = action
        self._queue: queue.Queue[Alert | None] = queue.Queue(max_pending)
        self.dropped = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="alert-action", daemon=True)
        self._thread.start()

    def __call__(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout_s: float | None = None) -> None:
        """Deliver the queued alerts, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            try:
                self._action(alert)
            except Exception:  # counted; the thread keeps serving
                self.errors += 1
