"""NGINX router: weights two `server` lines of an upstream in an include file, applied by a reload.

Open-source NGINX has no API for upstream weights (NGINX Plus does), so the configuration is
the interface: Sluice owns one file holding exactly the upstream's two `server` lines, which
the main config includes inside its `upstream` block. A change rewrites the file, checks the
whole configuration with `nginx -T` (`-t` plus a dump), and only then runs `nginx -s reload`.
A check that fails puts the previous file back, so NGINX never loads (nor could later load)
a configuration it refused. The router runs these commands itself: the Sluice worker must run
on the NGINX host, as a user that may write the file and signal NGINX's master.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.exceptions import ApplicationError

from sluice.activities.routers._files import config_error, read_owned, replace_owned
from sluice.contracts import errors
from sluice.contracts.calls import TrafficState
from sluice.contracts.spec import NginxRouter
from sluice.contracts.text import cap
from sluice.runtime.binaries import find_binary

HEADER = (
    "# Owned by Sluice (router type nginx): rewritten at every rollout step; change the spec, not\n"
    "# this file. Included inside an upstream block. 0% is a server marked `down`.\n"
)
_DUMP_FILE = re.compile(r"^# configuration file (.+):$", re.MULTILINE)
_PID = re.compile(r"^\s*pid\s+([^;\s]+)\s*;", re.MULTILINE)
_CONFIGURE_ARG = re.compile(r"--(prefix|pid-path)=(\S+)")
_POLL = 0.02
# /proc's start times tick every 10 ms and /proc/uptime is in hundredths: a worker that started
# this close before the file changed may be one that loaded it.
_CLOCK_SLACK = 0.05


@dataclass
class ServerLine:
    """One `server` line of the include file: its address, weight (0 = `down`) and other parameters."""

    address: str
    weight: int
    params: list[str] = field(default_factory=list)
    """Parameters other than `weight=` and `down` (`max_fails=3`, ...), kept as written."""

    def render(self) -> str:
        weight = ["down"] if self.weight == 0 else [f"weight={self.weight}"]
        return " ".join(["server", self.address, *self.params, *weight]) + ";\n"


class NginxTrafficRouter:
    """Splits an upstream's requests between `stable_server` and `canary_server` by weight.

    Canary percent `w` becomes `weight=w` on the canary line and `weight=100-w` on the
    stable one; NGINX's smooth weighted round robin then sends that share of each worker's
    requests. NGINX has no weight 0, so a server at 0% is marked `down` (out of the rotation,
    still declared): the file always names both servers. Both weights change in one file
    and one reload, so there is no intermediate split.

    A reload starts new worker processes with the new configuration; the old ones finish
    the requests they are serving and close their connections (nothing is dropped), so the
    new split applies to every request that starts after the new workers are up. The change
    is confirmed by seeing NGINX's master start new workers (from /proc), not just by the
    signal being sent: a reload NGINX fails (a port in use, a file it cannot open) keeps the
    old workers and the old split, and is reported as not applied.
    """

    def __init__(self, spec: NginxRouter) -> None:
        self.spec = spec
        self._file = Path(spec.upstream_file)
        self._where = f"NGINX {spec.upstream_file}"

    # --- TrafficRouter ------------------------------------------------------------------

    async def preflight(self) -> TrafficState:
        """Binary, config and include file exist, the config passes `nginx -t` and includes the
        file, NGINX runs and has loaded the file, and all traffic is on stable. Changes nothing."""
        deadline = self._deadline()
        servers = self._read_file()
        dump = await self._check(deadline, after_write=False)
        stable, canary = servers[self.spec.stable_server].weight, servers[self.spec.canary_server].weight
        self._loaded(await self._pid_path(dump, deadline))
        if stable == 0 or canary > 0:
            raise self._unexpected_split(stable, canary)
        state = self._state(servers)
        state.detail = f"{self._where}: {state.detail}"
        return state

    async def read_weights(self) -> TrafficState:
        """The split in the include file, once NGINX is seen to run it.

        Raises TRAFFIC_NOT_APPLIED when the file changed after NGINX last loaded its
        configuration (a hand edit without a reload, or a reload NGINX refused): the file
        then says something NGINX does not do.
        """
        deadline = self._deadline()
        servers = self._read_file()
        dump = await self._check(deadline, after_write=False)
        self._loaded(await self._pid_path(dump, deadline))
        return self._state(servers)

    async def set_weights(self, canary_weight: int) -> TrafficState:
        """Write the two weights, check with `nginx -T`, reload, and wait for the new workers.

        A failed check restores the previous file and raises ROUTER_REJECTED (nothing
        changed). A reload that cannot be sent (NGINX not running) raises ROUTER_UNREACHABLE
        and a reload NGINX does not carry out within `timeout` TRAFFIC_NOT_APPLIED, both
        retryable; the file then already holds the new split, which a retry applies.
        """
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be within 0..100, got {canary_weight}")
        deadline = self._deadline()
        old_text = read_owned(self._file, self._where, self._create_hint())
        servers = self._parse(old_text)
        servers[self.spec.stable_server].weight = 100 - canary_weight
        servers[self.spec.canary_server].weight = canary_weight
        new_text = HEADER + "".join(s.render() for s in servers.values())

        if new_text != old_text:
            replace_owned(self._file, new_text, self._where)
        try:
            dump = await self._check(deadline, after_write=new_text != old_text)
        except ApplicationError:
            if new_text != old_text:
                replace_owned(self._file, old_text, self._where)
            raise
        master = self._master(await self._pid_path(dump, deadline))
        if new_text == old_text and self._runs_file(master):
            return self._state(self._read_file())  # a retry after the reload went through
        before = set(_children(master) or {})
        await self._reload(deadline)
        await self._new_workers(master, before, deadline)

        read = self._read_file()
        stable, canary = read[self.spec.stable_server].weight, read[self.spec.canary_server].weight
        if (stable, canary) != (100 - canary_weight, canary_weight):
            raise ApplicationError(
                f"{self._where}: wrote stable={100 - canary_weight} canary={canary_weight} but read "
                f"back stable={stable} canary={canary}; another process may be writing the file",
                type=errors.TRAFFIC_NOT_APPLIED,
            )
        return self._state(read)

    # --- the include file -------------------------------------------------------------------

    def _read_file(self) -> dict[str, ServerLine]:
        return self._parse(read_owned(self._file, self._where, self._create_hint()))

    def _parse(self, text: str) -> dict[str, ServerLine]:
        """The file's server lines by address; ROUTER_CONFIG unless they are exactly the two servers."""
        lines: dict[str, ServerLine] = {}
        body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        for statement in body.split(";"):
            words = statement.split()
            if not words:
                continue
            if words[0] != "server" or len(words) < 2:
                raise self._bad_file(f"it has {cap(' '.join(words), 60)!r}, which is not a server line")
            address, weight, params = words[1], 1, []
            for word in words[2:]:
                if word == "down":
                    weight = 0
                elif word.startswith("weight="):
                    if not word[7:].isdigit() or int(word[7:]) < 1:
                        raise self._bad_file(f"{address} has {word!r}; NGINX weights are whole numbers >= 1")
                    weight = int(word[7:]) if weight else 0
                elif word == "backup":
                    raise self._bad_file(f"{address} is a backup server, which takes no share of a split")
                else:
                    params.append(word)
            if address in lines:
                raise self._bad_file(f"it names {address} twice")
            lines[address] = ServerLine(address, weight, params)
        missing = [a for a in (self.spec.stable_server, self.spec.canary_server) if a not in lines]
        others = [a for a in lines if a not in (self.spec.stable_server, self.spec.canary_server)]
        if missing or others:
            found = ", ".join(lines) or "no server lines"
            raise self._bad_file(
                f"it must hold exactly the servers {self.spec.stable_server} and "
                f"{self.spec.canary_server}, found {found}"
            )
        return {a: lines[a] for a in (self.spec.stable_server, self.spec.canary_server)}

    def _bad_file(self, why: str) -> ApplicationError:
        return config_error(f"{self._where}: {why}; Sluice owns this file, write it as: {self._example()}")

    def _example(self) -> str:
        return f"server {self.spec.stable_server} weight=100; server {self.spec.canary_server} down;"

    def _create_hint(self) -> str:
        return f"create it with the two server lines ({self._example()}) and include it in the upstream block"

    # --- the nginx command --------------------------------------------------------------------

    def _deadline(self) -> float:
        return time.monotonic() + self.spec.timeout.total_seconds()

    def _argv(self, *args: str) -> list[str]:
        binary = self.spec.binary if self.spec.binary.startswith("/") else find_binary(self.spec.binary)
        if binary is None or not Path(binary).is_file():
            raise config_error(
                f"{self._where}: the nginx binary {self.spec.binary!r} is not on the worker's host; "
                "the nginx router runs nginx -t and -s reload itself, so the worker runs next to NGINX"
            )
        prefix = ["-p", self.spec.prefix] if self.spec.prefix else []
        # -e stderr: the command's own error log, so a worker without write access to NGINX's
        # compiled-in error log path still gets every message back.
        return [binary, *prefix, "-c", self.spec.config, "-e", "stderr", *args]

    async def _run(self, deadline: float, *args: str) -> tuple[int, str, str]:
        """Run `nginx <args>`; (exit code, stdout, stderr). ROUTER_UNREACHABLE past the deadline."""
        argv = self._argv(*args)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.1)):
                out, err = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise ApplicationError(
                f"{self._where}: nginx {' '.join(args)} did not finish within "
                f"{self.spec.timeout.total_seconds():g}s",
                type=errors.ROUTER_UNREACHABLE,
            ) from None
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def _check(self, deadline: float, *, after_write: bool) -> str:
        """`nginx -T`: the configuration passes the check and includes the file; return the dump."""
        self._config_exists()
        code, dump, err = await self._run(deadline, "-T")
        if code != 0:
            message = _nginx_error(err)
            if after_write:
                raise ApplicationError(
                    cap(
                        f"{self._where}: nginx -t refused the new weights, so the previous file is "
                        f"back and nothing changed: {message}"
                    ),
                    type=errors.ROUTER_REJECTED,
                    non_retryable=True,
                )
            raise config_error(f"{self._where}: nginx -t fails on the configuration as it is: {message}")
        self._includes_file(dump)
        return dump

    def _config_exists(self) -> None:
        if not Path(self.spec.config).is_file():
            raise config_error(f"{self._where}: the config {self.spec.config} does not exist")

    def _includes_file(self, dump: str) -> None:
        """Raise unless the file is among those `nginx -T` read (compared after resolving links)."""
        wanted = os.path.realpath(self._file)
        if not any(os.path.realpath(p) == wanted for p in _DUMP_FILE.findall(dump)):
            raise config_error(
                f"{self._where}: {self.spec.config} does not include the file; put "
                f"`include {self.spec.upstream_file};` inside the upstream block"
            )

    async def _reload(self, deadline: float) -> None:
        code, _, err = await self._run(deadline, "-s", "reload")
        if code == 0:
            return
        message = _nginx_error(err)
        if "Operation not permitted" in message:
            raise config_error(
                f"{self._where}: the worker's user may not signal NGINX's master (run the worker as "
                f"NGINX's user or root): {message}"
            )
        raise ApplicationError(
            cap(f"{self._where}: nginx -s reload failed; is NGINX running? {message}"),
            type=errors.ROUTER_UNREACHABLE,
        )

    # --- NGINX's processes ----------------------------------------------------------------------

    def _master(self, path: str) -> int:
        """The running master's PID, from the pid file the configuration names (`path`)."""
        try:
            text = Path(path).read_text().strip()
        except OSError as err:
            raise self._not_running(f"pid file {path}: {err.strerror or err}") from None
        if not text.isdigit():
            raise self._not_running(f"pid file {path} holds no PID")
        pid = int(text)
        try:
            os.kill(pid, 0)
        except PermissionError:
            return pid  # it runs, as another user
        except OSError:
            raise self._not_running(f"no process {pid} from pid file {path}") from None
        return pid

    def _not_running(self, why: str) -> ApplicationError:
        return ApplicationError(
            cap(f"{self._where}: NGINX is not running ({why})"), type=errors.ROUTER_UNREACHABLE
        )

    async def _pid_path(self, dump: str, deadline: float) -> str:
        """The pid file: the config's `pid`, else NGINX's compiled-in one (`nginx -V`)."""
        found = _PID.search(dump)
        configured: dict[str, str] = {}
        if not found or not (found.group(1).startswith("/") or self.spec.prefix):
            _, _, version = await self._run(deadline, "-V")  # NGINX prints it on stderr
            configured = dict(_CONFIGURE_ARG.findall(version))
        path = found.group(1) if found else configured.get("pid-path", "logs/nginx.pid")
        if path.startswith("/"):
            return path
        return os.path.join(self.spec.prefix or configured.get("prefix", "/usr/share/nginx"), path)

    def _loaded(self, pid_path: str) -> None:
        """Raise unless NGINX runs and started its workers after the file last changed."""
        master = self._master(pid_path)
        if self._runs_file(master) is False:
            raise ApplicationError(
                f"{self._where}: the file changed after NGINX last loaded its configuration, so "
                "NGINX may serve another split; a set_weights (or nginx -s reload) applies it",
                type=errors.TRAFFIC_NOT_APPLIED,
            )

    def _runs_file(self, master: int) -> bool | None:
        """Whether the master's newest worker started after the file's last change (None: no /proc)."""
        children = _children(master)
        if not children:
            return None
        try:
            age = time.time() - self._file.stat().st_mtime
            uptime = float(Path("/proc/uptime").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return max(children.values()) >= uptime - age - _CLOCK_SLACK

    async def _new_workers(self, master: int, before: set[int], deadline: float) -> None:
        """Wait until the master runs a worker that was not there before the reload, and every
        old worker has stopped accepting.

        An old worker sets its title to `worker process is shutting down` as it closes its
        listening sockets and idle connections; until then it still accepts requests and
        serves them with the old split (seen in tests: the first ~20 requests after a reload).
        It then only finishes what it is serving (keep-alive connections close after their
        current request), so from here on every new request gets the new split.
        """
        while True:
            children = _children(master)
            if children is None:
                return  # no /proc: the reload was sent, which is all that can be known here
            old_accepting = [pid for pid in before & set(children) if not _shutting_down(pid)]
            if set(children) - before and not old_accepting:
                return
            if time.monotonic() >= deadline:
                raise ApplicationError(
                    f"{self._where}: sent nginx -s reload, but NGINX started no new workers within "
                    f"{self.spec.timeout.total_seconds():g}s, so it still runs the old split; its "
                    "error log says why (a reload NGINX cannot complete keeps the old configuration)",
                    type=errors.TRAFFIC_NOT_APPLIED,
                )
            await asyncio.sleep(_POLL)

    # --- results --------------------------------------------------------------------------------

    def _state(self, servers: dict[str, ServerLine]) -> TrafficState:
        stable, canary = servers[self.spec.stable_server].weight, servers[self.spec.canary_server].weight
        detail = (
            f"weights {self.spec.stable_server}={_shown(stable)} {self.spec.canary_server}={_shown(canary)}"
        )
        if stable + canary == 0:
            return TrafficState(
                stable_weight=0, canary_weight=0, detail=f"both servers are down: NGINX answers 502; {detail}"
            )
        canary_pct = round(100 * canary / (stable + canary))
        return TrafficState(stable_weight=100 - canary_pct, canary_weight=canary_pct, detail=detail)

    def _unexpected_split(self, stable: int, canary: int) -> ApplicationError:
        s, c = self.spec.stable_server, self.spec.canary_server
        if stable == 0 and canary > 0:
            fix = "if the canary server runs the live version, swap stable_server and canary_server"
        else:
            fix = f"write `server {s} weight=100; server {c} down;` and reload NGINX first"
        return ApplicationError(
            cap(
                f"{self._where}: found {s}={_shown(stable)} {c}={_shown(canary)}, but a rollout starts "
                f"with all traffic on stable_server; {fix}"
            ),
            type=errors.UNEXPECTED_SPLIT,
            non_retryable=True,
        )


def _shown(weight: int) -> str:
    return "down" if weight == 0 else str(weight)


def _nginx_error(stderr: str) -> str:
    """NGINX's own complaint, without the `syntax is ok` chatter, capped."""
    lines = [
        line for line in stderr.splitlines() if "[emerg]" in line or "[error]" in line or "[alert]" in line
    ]
    return cap(" ".join(lines or stderr.split()) or "no output", 200)


def _shutting_down(pid: int) -> bool:
    """Whether an NGINX worker has begun its graceful exit (or is gone)."""
    try:
        return b"shutting down" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def _children(master: int) -> dict[int, float] | None:
    """The master's child processes and their start times (seconds since boot); None without /proc."""
    proc = Path("/proc")
    if not (proc / "uptime").exists():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    with os.scandir(proc) as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                stat = (proc / entry.name / "stat").read_text()
            except OSError:
                continue  # exited meanwhile
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) > 19 and fields[1] == str(master):
                found[int(entry.name)] = int(fields[19]) / ticks
    return found
