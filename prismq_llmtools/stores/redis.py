"""The Redis store: buckets and budgets shared by every machine that reaches one Redis.

Every operation is one Lua script (``ratelimit.lua``, ``budget.lua``), so it is atomic on
the server, and reads the time from the Redis server (``TIME``): the clients' clocks do not
matter. The scripts implement the same math as :mod:`prismq_llmtools.stores.bucket` and
:mod:`prismq_llmtools.stores.ledger`; the parametrised store tests hold them to it.
Requires the ``redis`` package (``pip install 'prismq_llmtools[redis]'``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from prismq_llmtools.clock import Clock, wall_seconds
from prismq_llmtools.errors import ConfigurationError, StateStoreError
from prismq_llmtools.stores.bucket import (
    REORDER_WINDOW_S,
    SEND_WINDOW_S,
    BucketSpec,
    Refusal,
    Ticket,
    check_admission,
    check_feedback,
)
from prismq_llmtools.stores.ledger import BudgetLine, BudgetStatus, Crossing, Denial, Unit
from prismq_llmtools.stores.urls import display_url

__all__ = ["RedisStore"]

_PREFIX = "prismq_llmtools"


def _num(value: float) -> str:
    return "1e308" if math.isinf(value) else repr(float(value))


def _unit(text: str) -> Unit:
    return "usd" if text == "usd" else "tokens"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore:
    """State in Redis.

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``). The query
            ``?clock=caller`` selects ``server_time=False``.
        server_time: read the time from the Redis server (the default); ``False`` uses
            the caller's ``clock.wall()`` instead, for tests on a fake clock.
    """

    def __init__(self, url: str, *, server_time: bool = True) -> None:
        try:
            import redis
        except ImportError:
            raise ConfigurationError(
                "the Redis store needs the redis package: pip install 'prismq_llmtools[redis]'"
            ) from None
        self.url = url
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if (k, v) != ("clock", "caller")]
        self.server_time = server_time and len(query) == len(parse_qsl(parts.query))
        connect = urlunsplit(parts._replace(query=urlencode(query)))
        self._shown = display_url(url)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(connect, socket_timeout=5, socket_connect_timeout=5)
        here = files("prismq_llmtools.stores")
        self._limiter = self._client.register_script(here.joinpath("ratelimit.lua").read_text())
        self._ledger = self._client.register_script(here.joinpath("budget.lua").read_text())

    def _run(self, script: Any, keys: list[str], args: list[str]) -> Any:
        try:
            return script(keys=keys, args=args)
        except self._errors as exc:
            raise StateStoreError(self._shown, exc) from exc

    def _now(self, clock: Clock) -> str:
        return "" if self.server_time else _num(wall_seconds(clock))

    # -- rate limits -----------------------------------------------------------------

    def _limit(
        self,
        op: str,
        key: str,
        specs: Sequence[BucketSpec],
        clock: Clock,
        extra: list[str],
        *,
        ticket: Ticket | None = None,
    ) -> Any:
        args = [op, self._now(clock), str(len(specs))]
        for spec in specs:
            args += [spec.name, _num(spec.capacity), _num(spec.burst), _num(spec.rate_per_s)]
        base = f"{_PREFIX}:rl:{{{key}}}"
        keys = [base, f"{base}:inflight"]
        if ticket is not None:  # what its refunds gave back so far
            keys.append(f"{base}:refunded:{ticket.id}")
        return self._run(self._limiter, keys, args + extra)

    def admit(
        self,
        key: str,
        specs: Sequence[BucketSpec],
        costs: Sequence[float],
        *,
        clock: Clock,
        ticket_id: str,
        ttl_s: float,
        max_wait_s: float,
    ) -> Ticket | Refusal:
        check_admission(key, costs, ttl_s)
        extra = [*map(_num, costs), ticket_id, _num(ttl_s), _num(max_wait_s)]
        out = [_text(x) for x in self._limit("admit", key, specs, clock, extra)]
        if out[0] == "0":
            return Refusal(wait_s=float(out[1]), bucket=out[2])
        n = len(specs)
        return Ticket(
            id=ticket_id,
            start=float(out[1]),
            bucket=out[2],
            costs=tuple(float(x) for x in out[6 + n : 6 + 2 * n]),
            shift_s=float(out[3]),
            charged=tuple(float(x) for x in out[6 : 6 + n]),
            wait_s=float(out[4]),
            seq=int(out[5]),
            expires_at=float(out[1]) + ttl_s,
            counted=tuple(float(x) for x in out[6 + 2 * n : 6 + 3 * n]),
        )

    def wait_s(
        self, key: str, specs: Sequence[BucketSpec], ticket: Ticket, *, clock: Clock
    ) -> float:
        extra = [_num(ticket.start), _num(ticket.shift_s)]
        return float(_text(self._limit("wait", key, specs, clock, extra)))

    def release(
        self, key: str, specs: Sequence[BucketSpec], ticket: Ticket, *, clock: Clock
    ) -> None:
        # The script's feedback with nothing to correct is a release: one script, one path.
        self.feedback(key, specs, ticket, clock=clock)

    def feedback(
        self,
        key: str,
        specs: Sequence[BucketSpec],
        ticket: Ticket,
        *,
        clock: Clock,
        deficits: Sequence[float | None] = (),
        refund: Sequence[float] = (),
        pause_s: float = 0.0,
        follow_down: bool = True,
        reorder_s: float = REORDER_WINDOW_S,
        server_limits: Sequence[float | None] = (),
        refused: bool = False,
    ) -> list[float]:
        check_feedback(key, deficits, refund, pause_s)
        n = len(specs)
        padded_deficits = [*deficits, *([None] * (n - len(deficits)))]
        padded_refund = [*refund, *([0.0] * (n - len(refund)))]
        learning = len(ticket.counted) == n
        limits = [*server_limits, *([None] * (n - len(server_limits)))] if learning else [None] * n
        extra = [
            ticket.id,
            _num(ticket.start),
            _num(ticket.shift_s),
            str(ticket.seq),
            _num(ticket.expires_at),
            _num(reorder_s),
            _num(SEND_WINDOW_S),
            *map(_num, ticket.costs),
            *map(_num, ticket.charged),
            *("" if d is None else _num(d) for d in padded_deficits),
            *map(_num, padded_refund),
            _num(pause_s),
            "1" if follow_down else "0",
            "1" if refused else "0",
            *("" if x is None else _num(x) for x in limits),
            *(map(_num, ticket.counted) if learning else [""] * n),
        ]
        out = self._limit("feedback", key, specs, clock, extra, ticket=ticket)
        return [float(_text(x)) for x in out]

    def levels(self, key: str, specs: Sequence[BucketSpec], *, clock: Clock) -> list[float]:
        return [float(_text(x)) for x in self._limit("levels", key, specs, clock, [])]

    # -- budgets ---------------------------------------------------------------------

    def _budget(
        self, op: str, scope: str, lines: Sequence[BudgetLine], clock: Clock, extra: list[str]
    ) -> Any:
        args = [op, self._now(clock), str(len(lines))]
        for line in lines:
            thresholds = ",".join(_num(t) for t in line.thresholds)
            args += [line.name, line.unit, line.period, str(line.limit), _num(line.window_s)]
            args.append(thresholds)
        base = f"{_PREFIX}:budget:{{{scope}}}"
        return self._run(self._ledger, [base, f"{base}:reservations"], args + extra)

    def reserve(
        self,
        scope: str,
        lines: Sequence[BudgetLine],
        amounts: dict[str, int],
        *,
        clock: Clock,
        reservation_id: str,
        ttl_s: float,
    ) -> Denial | None:
        extra = [
            str(amounts.get("tokens", 0)),
            str(amounts.get("usd", 0)),
            reservation_id,
            _num(ttl_s),
        ]
        out = [_text(x) for x in self._budget("reserve", scope, lines, clock, extra)]
        if out[0] == "1":
            return None
        return Denial(out[1], _unit(out[2]), int(float(out[3])), int(float(out[4])))

    def settle(
        self,
        scope: str,
        lines: Sequence[BudgetLine],
        reservation_id: str,
        actual: dict[str, int],
        *,
        clock: Clock,
    ) -> list[Crossing]:
        extra = [reservation_id, str(actual.get("tokens", 0)), str(actual.get("usd", 0))]
        out = [_text(x) for x in self._budget("settle", scope, lines, clock, extra)]
        crossings = []
        for i in range(0, len(out), 5):
            crossings.append(
                Crossing(
                    out[i],
                    _unit(out[i + 1]),
                    float(out[i + 2]),
                    int(float(out[i + 3])),
                    int(float(out[i + 4])),
                )
            )
        return crossings

    def budget_status(
        self, scope: str, lines: Sequence[BudgetLine], *, clock: Clock
    ) -> list[BudgetStatus]:
        out = [_text(x) for x in self._budget("status", scope, lines, clock, [])]
        return [
            BudgetStatus(
                line.name,
                line.unit,
                line.limit,
                int(float(out[2 * i])),
                int(float(out[2 * i + 1])),
            )
            for i, line in enumerate(lines)
        ]

    # -- housekeeping ----------------------------------------------------------------

    def clear(self) -> None:
        try:
            keys = list(self._client.scan_iter(match=f"{_PREFIX}:*", count=1000))
            if keys:
                self._client.delete(*keys)
        except self._errors as exc:
            raise StateStoreError(self._shown, exc) from exc

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RedisStore({self._shown!r})"
