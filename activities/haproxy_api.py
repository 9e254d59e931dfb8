"""HAProxy's runtime API (the stats socket) for one backend: `get weight`, `set weight`, `show stat`.

Shared by the HAProxy router (weights) and the HAProxy provider (counters). Errors are
`ApplicationError`s with a type from `contracts.errors`, worded for the person who has to
fix haproxy.cfg or the spec. Only HAProxy's own replies are capped when quoted: the rest of
each message is made of spec fields, whose lengths the spec bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import re
from typing import NoReturn

from temporalio.exceptions import ApplicationError

from sluice.contracts import errors
from sluice.contracts.calls import ServerCounters
from sluice.contracts.spec import HAProxyRouter
from sluice.contracts.text import cap

_WEIGHT_REPLY = re.compile(r"^(\d+) \(initial \d+\)$")
_RESPONSE_COLUMNS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")
# Requests the server never answered are not in its hrsp_*: HAProxy counts them in `econ`
# (could not connect; the client got HAProxy's 503), `eresp` (broken or timed-out response;
# 502/504) or, with `option redispatch`, `wredis` (sent to another server instead). A canary
# that crashed would otherwise show no responses at all and never fail its analysis.
_FAILED_COLUMNS = ("econ", "eresp", "wredis")


class RuntimeAPI:
    """One HAProxy instance's runtime API at `address` (a unix socket path or `host:port`).

    Every command opens its own connection, as HAProxy closes it after one answer, so
    nothing is cached: each call reflects the live state.
    """

    def __init__(self, address: str, backend: str, timeout: float) -> None:
        self.address = address
        self.backend = backend
        self._timeout = timeout

    @classmethod
    def all_of(cls, spec: HAProxyRouter) -> list[RuntimeAPI]:
        """The runtime API of every HAProxy instance a router spec names, each once, in order."""
        addresses = [spec.admin_socket] if isinstance(spec.admin_socket, str) else spec.admin_socket
        timeout = spec.timeout.total_seconds()
        return [cls(address, spec.backend, timeout) for address in dict.fromkeys(addresses)]

    @property
    def where(self) -> str:
        """`HAProxy at /run/haproxy/admin.sock backend be_app`, to start messages with."""
        return f"HAProxy at {self.address} backend {self.backend}"

    async def get_weight(self, server: str) -> int:
        """The server's current weight (0-256)."""
        command = f"get weight {self.backend}/{server}"
        reply = await self._command(command, server)
        match = _WEIGHT_REPLY.match(reply)
        if not match:
            self._reject(command, reply)
        return int(match.group(1))

    async def set_weight(self, server: str, weight: int) -> None:
        """Set an absolute weight; HAProxy applies it from the next request on."""
        command = f"set weight {self.backend}/{server} {weight}"
        reply = await self._command(command, server)
        if reply:
            self._reject(command, reply)

    async def uptime(self) -> int:
        """Seconds since this HAProxy process started (a reload starts a new one, with new counters)."""
        reply = await self._command("show info", "")
        for line in reply.splitlines():
            key, _, value = line.partition(":")
            if key == "Uptime_sec" and value.strip().isdigit():
                return int(value)
        self._reject("show info", reply)

    async def counters(self, *servers: str) -> dict[str, ServerCounters]:
        """Cumulative counters of `servers`, all from one `show stat`, so of the same moment.

        `responses` is hrsp_1xx..5xx + hrsp_other, `errors_5xx` is hrsp_5xx; requests the
        server failed to answer (`econ` + `eresp` + `wredis`) count in both: the server
        failed them, even when a redispatch to another server saved the user.
        """
        # `show stat <proxy> 4 -1`: servers (type 4) of one proxy, all server ids.
        command = f"show stat {self.backend} 4 -1"
        reply = await self._command(command, servers[0])
        lines = reply.splitlines()
        if not lines or not lines[0].startswith("# "):
            self._reject(command, reply)
        found: dict[str, ServerCounters] = {}
        for row in csv.DictReader([lines[0][2:], *lines[1:]]):
            name = row.get("svname")
            if row.get("pxname") == self.backend and name in servers and name not in found:
                try:
                    failed = sum(int(row[col] or 0) for col in _FAILED_COLUMNS)
                    responses = sum(int(row[col] or 0) for col in _RESPONSE_COLUMNS) + failed
                    errors_5xx = int(row["hrsp_5xx"] or 0) + failed
                except (KeyError, ValueError):
                    self._reject(command, lines[0])
                found[name] = ServerCounters(responses=responses, errors_5xx=errors_5xx)
        for server in servers:
            if server not in found:
                raise self._no_such_server(server)
        return found

    # --- one command ------------------------------------------------------------------------

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
                f"{self.where}: no such backend; use a `backend` name from haproxy.cfg "
                "as router.backend in the spec (HAProxy names are case-sensitive)",
                type=errors.ROUTER_CONFIG,
                non_retryable=True,
            )
        if text.startswith("No such server"):
            raise self._no_such_server(server)
        return text

    async def _exchange(self, command: str) -> str:
        if self.address.startswith("/"):
            reader, writer = await asyncio.open_unix_connection(self.address)
        else:
            host, _, port = self.address.rpartition(":")
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

    def _no_such_server(self, server: str) -> ApplicationError:
        return ApplicationError(
            f"{self.where} has no server {server!r}; add `server {server} <addr>` to "
            f"`backend {self.backend}` in haproxy.cfg, or fix stable_server/canary_server "
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
            f"{self.where} refused {command!r}: {text}{hint}",
            type=errors.ROUTER_REJECTED,
            non_retryable=True,
        )

    def _unreachable(self, why: str) -> ApplicationError:
        return ApplicationError(
            f"HAProxy runtime API at {self.address} is unreachable ({why}); is HAProxy "
            f"running, and does haproxy.cfg have `stats socket {self.address} level admin`?",
            type=errors.ROUTER_UNREACHABLE,
        )
