"""HAProxy router: weights two servers of one backend through the runtime API (stats socket)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import re
from typing import NoReturn

from temporalio.exceptions import ApplicationError

from sluice.contracts import errors
from sluice.contracts.calls import ServerCounters, TrafficState
from sluice.contracts.spec import HAProxyRouter
from sluice.contracts.text import cap

_WEIGHT_REPLY = re.compile(r"^(\d+) \(initial \d+\)$")
_RESPONSE_COLUMNS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")
# Requests the server never answered are not in its hrsp_*: HAProxy counts them in `econ`
# (could not connect; the client got HAProxy's 503), `eresp` (broken or timed-out response;
# 502/504) or, with `option redispatch`, `wredis` (sent to another server instead). A canary
# that crashed would otherwise show no responses at all and never fail its analysis.
_FAILED_COLUMNS = ("econ", "eresp", "wredis")


class HAProxyTrafficRouter:
    """Splits a backend's requests between `stable_server` and `canary_server` by weight.

    A canary percent `w` becomes weight `w` on the canary server and `100 - w` on the stable
    one; with `balance roundrobin` HAProxy then sends exactly that share of requests (over
    each cycle of 100). Weights are absolute (never `N%`, which HAProxy reads as a percent
    of the initial weight) and always sum to 100, so the backend is never left without
    a server.

    Every call opens one connection per runtime API command, as HAProxy closes it after
    one answer. Nothing is cached between calls, so each method reflects the live state.
    """

    def __init__(self, spec: HAProxyRouter) -> None:
        self.spec = spec
        self._timeout = spec.timeout.total_seconds()

    # --- TrafficRouter ------------------------------------------------------------------

    async def preflight(self) -> TrafficState:
        """Check the socket answers and both servers exist; return the split. Changes nothing."""
        state = await self.read_weights()
        state.detail = f"{self._where()}: {state.detail}"
        return state

    async def read_weights(self) -> TrafficState:
        """The current split (from `get weight`) and the canary's counters."""
        counters = await self.canary_counters()
        stable = await self._get_weight(self.spec.stable_server)
        canary = await self._get_weight(self.spec.canary_server)
        return self._state(stable, canary, counters)

    async def canary_counters(self) -> ServerCounters:
        """The canary server's cumulative responses and 5xx, from `show stat`.

        `responses` is hrsp_1xx..5xx + hrsp_other, `errors_5xx` is hrsp_5xx; requests the
        server failed to answer (`econ` + `eresp` + `wredis`) count in both: the canary
        failed them, even when a redispatch to stable saved the user.
        """
        return (await self._counters(self.spec.canary_server))[self.spec.canary_server]

    async def both_counters(self) -> tuple[ServerCounters, ServerCounters]:
        """(stable, canary) cumulative counters from one `show stat`, so both are of the same moment."""
        rows = await self._counters(self.spec.stable_server, self.spec.canary_server)
        return rows[self.spec.stable_server], rows[self.spec.canary_server]

    async def set_weights(self, canary_weight: int) -> TrafficState:
        """Set canary `canary_weight` and stable `100 - canary_weight`, then verify by reading back.

        The canary's counters are read before anything changes (they are the baseline
        of an analysis that starts at this step) and returned in `canary_counters`.

        Two commands cannot change two weights atomically, so the order is chosen so that
        a failure between them ("an unreachable router never gets half a change") leaves
        the safest split:

        - The canary server is set first. When its share goes down (including a rollback
          to 0) the first command already takes traffic away from the new version: a
          rollback whose second command fails has still removed the canary from the
          rotation. When its share goes up, the intermediate split gives the canary less
          than the target, never more.
        - Exception: if stable currently has weight 0 and the canary is going to 0 (a
          rollback from 100% canary), canary-first would leave both servers at 0 and the
          backend answering 503. Stable is raised first instead.

        Either way the intermediate canary share lies between the old and the new one, and
        an activity retry repeats both commands, since they are declarative.
        """
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be within 0..100, got {canary_weight}")
        stable_weight = 100 - canary_weight
        stable_before, before = await self.both_counters()
        current_stable = await self._get_weight(self.spec.stable_server)
        order = [
            (self.spec.canary_server, canary_weight),
            (self.spec.stable_server, stable_weight),
        ]
        if current_stable == 0 and canary_weight == 0:
            order.reverse()
        for server, weight in order:
            await self._set_weight(server, weight)

        stable_read = await self._get_weight(self.spec.stable_server)
        canary_read = await self._get_weight(self.spec.canary_server)
        if (stable_read, canary_read) != (stable_weight, canary_weight):
            raise ApplicationError(
                f"{self._where()}: set weights stable={stable_weight} canary={canary_weight} "
                f"but read back stable={stable_read} canary={canary_read}; another client may "
                "be changing weights",
                type=errors.TRAFFIC_NOT_APPLIED,
            )
        state = self._state(stable_read, canary_read, before)
        state.stable_counters = stable_before
        return state

    # --- runtime API ----------------------------------------------------------------------

    def _where(self) -> str:
        return f"HAProxy at {self.spec.admin_socket} backend {self.spec.backend}"

    def _state(self, stable: int, canary: int, counters: ServerCounters) -> TrafficState:
        total = stable + canary
        if total == 0:
            return TrafficState(
                stable_weight=0,
                canary_weight=0,
                canary_counters=counters,
                detail="both servers have weight 0: the backend answers every request with 503",
            )
        canary_pct = round(100 * canary / total)
        return TrafficState(
            stable_weight=100 - canary_pct,
            canary_weight=canary_pct,
            canary_counters=counters,
            detail=f"weights {self.spec.stable_server}={stable} {self.spec.canary_server}={canary}",
        )

    async def _get_weight(self, server: str) -> int:
        reply = await self._command(f"get weight {self.spec.backend}/{server}", server)
        match = _WEIGHT_REPLY.match(reply)
        if not match:
            self._reject(f"get weight {self.spec.backend}/{server}", reply)
        return int(match.group(1))

    async def _set_weight(self, server: str, weight: int) -> None:
        reply = await self._command(f"set weight {self.spec.backend}/{server} {weight}", server)
        if reply:
            self._reject(f"set weight {self.spec.backend}/{server} {weight}", reply)

    async def _counters(self, *servers: str) -> dict[str, ServerCounters]:
        # `show stat <proxy> 4 -1`: servers (type 4) of one proxy, all server ids.
        reply = await self._command(f"show stat {self.spec.backend} 4 -1", servers[0])
        lines = reply.splitlines()
        if not lines or not lines[0].startswith("# "):
            self._reject(f"show stat {self.spec.backend} 4 -1", reply)
        rows = csv.DictReader([lines[0][2:], *lines[1:]])
        found: dict[str, ServerCounters] = {}
        for row in rows:
            name = row.get("svname")
            if row.get("pxname") == self.spec.backend and name in servers and name not in found:
                try:
                    failed = sum(int(row[col] or 0) for col in _FAILED_COLUMNS)
                    responses = sum(int(row[col] or 0) for col in _RESPONSE_COLUMNS) + failed
                    errors_5xx = int(row["hrsp_5xx"] or 0) + failed
                except (KeyError, ValueError):
                    self._reject(f"show stat {self.spec.backend} 4 -1", lines[0])
                found[name] = ServerCounters(responses=responses, errors_5xx=errors_5xx)
        for server in servers:
            if server not in found:
                raise self._no_such_server(server)
        return found

    def _no_such_server(self, server: str) -> ApplicationError:
        return ApplicationError(
            f"{self._where()} has no server {server!r}; add `server {server} <addr>` to "
            f"`backend {self.spec.backend}` in haproxy.cfg, or fix stable_server/canary_server "
            "in the spec",
            type=errors.ROUTER_CONFIG,
            non_retryable=True,
        )

    def _reject(self, command: str, reply: str) -> NoReturn:
        text = cap(" ".join(reply.split()), 200) or "(no reply)"
        hint = ""
        if "Permission denied" in reply:
            hint = "; the stats socket needs `level admin` in haproxy.cfg"
        raise ApplicationError(
            f"{self._where()} refused {command!r}: {text}{hint}",
            type=errors.ROUTER_REJECTED,
            non_retryable=True,
        )

    async def _command(self, command: str, server: str) -> str:
        """Send one command; return its reply without the trailing blank line.

        Raises ROUTER_UNREACHABLE when the socket cannot be used and ROUTER_CONFIG when
        HAProxy says the backend or server does not exist.
        """
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._exchange(command)
        except TimeoutError:
            raise self._unreachable(f"no answer within {self._timeout:g}s") from None
        except OSError as err:
            raise self._unreachable(err.strerror or type(err).__name__) from None

        if not reply:
            # A good `set weight` answer is one empty line, so zero bytes must not pass for it.
            raise self._unreachable(f"connection closed without an answer to {command!r}")
        text = reply.strip("\n")
        if text.startswith(("No such backend", "No such proxy")):
            raise ApplicationError(
                f"{self._where()}: no such backend; use a `backend` name from haproxy.cfg "
                "as router.backend in the spec (HAProxy names are case-sensitive)",
                type=errors.ROUTER_CONFIG,
                non_retryable=True,
            )
        if text.startswith("No such server"):
            raise self._no_such_server(server)
        return text

    async def _exchange(self, command: str) -> str:
        target = self.spec.admin_socket
        if target.startswith("/"):
            reader, writer = await asyncio.open_unix_connection(target)
        else:
            host, _, port = target.rpartition(":")
            reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            data = await reader.read()  # HAProxy closes the connection after one answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return data.decode(errors="replace")

    def _unreachable(self, why: str) -> ApplicationError:
        return ApplicationError(
            f"HAProxy runtime API at {self.spec.admin_socket} is unreachable ({why}); is "
            "HAProxy running, and does haproxy.cfg have `stats socket "
            f"{self.spec.admin_socket} level admin`?",
            type=errors.ROUTER_UNREACHABLE,
        )
