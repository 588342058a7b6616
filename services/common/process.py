"""A background process with a pid file and a log file: how the embedded stack runs its servers.

The broker (a JVM), the Schema Registry and the KSQL server are all started this way, so
`stack up/down/status` treat them alike, and a second `stack up` finds the ones already running.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import FraudstreamError


@dataclass
class ManagedProcess:
    name: str
    pid_file: Path
    log_file: Path

    def pid(self) -> int | None:
        """The pid from the pid file, if that process is still alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(
        self,
        cmd: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start detached from our session (it outlives the CLI), output appended to the log."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                list(cmd),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        self._popen = proc
        return proc.pid

    def exited_early(self) -> int | None:
        """The exit code if the process we just started has already died, else None."""
        proc = getattr(self, "_popen", None)
        return None if proc is None else proc.poll()

    def wait_healthy(
        self,
        healthy: Callable[[], bool],
        timeout: float,
        describe_exit: Callable[[], str] | None = None,
        interval: float = 0.3,
    ) -> None:
        """Poll `healthy` until it answers True; fail at once if the process died meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.exited_early()
            if code is not None:
                why = describe_exit() if describe_exit else self.log_tail(3).strip()
                raise FraudstreamError(
                    f"{self.name} exited with code {code} during start-up: "
                    f"{why or 'no output'} (log: {self.log_file})",
                    code="start_failed",
                )
            if healthy():
                return
            time.sleep(interval)
        raise FraudstreamError(
            f"{self.name} did not become healthy within {timeout:.0f}s", code="start_timeout"
        )

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def rss_bytes(self) -> int | None:
        pid = self.pid()
        return None if pid is None else rss_of(pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        if state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    except OSError:
        pass
    return True


def rss_of(pid: int) -> int | None:
    """Resident memory of a process in bytes (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def port_in_use(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, picked by the OS (bind to 0): for anything a test or tool starts
    beside the stack's own fixed ports."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_PAIR_PORTS_FROM = 10_000
"""The lowest port `free_port_pair` picks (above the stack's fixed ports)."""


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _bindable(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port_pair(host: str = "127.0.0.1", attempts: int = 50) -> int:
    """A port p such that p and p + 1 are both free now (the embedded broker's controller
    listens on p + 1): for tests and tools that start a broker beside the stack's own.

    Picked at random below the kernel's ephemeral range, not by binding port 0: that range is
    where the kernel takes the local port of every other bind(0) and of every outgoing
    connection, the broker's own among them (it dials its controller on p + 1 before that
    listens, and a dial given p + 1 as its local port connects to itself). A broker restarted
    on its pair (the restart and chaos tests) then failed with `Address already in use` on the
    controller port, in one CI run of two here. The stack's fixed ports sit below that range
    too. Where the range starts too low to leave room, bind(0) as before."""
    import random
    import socket

    below = _ephemeral_ports_start() - 2
    pick = random.SystemRandom()
    for _ in range(attempts):
        if below > _PAIR_PORTS_FROM:
            port = pick.randrange(_PAIR_PORTS_FROM, below)
        else:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = int(probe.getsockname()[1])
        if _bindable(host, port) and _bindable(host, port + 1):
            return port
    raise FraudstreamError(f"no two consecutive free ports on {host}", code="no_free_port")


def freeze_startup_heap(batch_objects: int = 0) -> None:
    """Move every object alive now out of the garbage collector's reach.

    A service that imports TensorFlow, numba or a parser generator starts with millions of
    long-lived objects; each full collection scans them all, a 100-300 ms pause that lands in
    whatever batch happens to allocate at that moment. Frozen after start-up, they are never
    scanned again, while objects made later are collected as usual.

    `batch_objects`: how many tracked objects a batch keeps alive at once (a consumed message
    is one). The collector runs whenever allocations outnumber deallocations by its first
    threshold (700): a 10,000-message batch would trigger a dozen collections that each walk
    the batch's messages, only for them all to be freed when the batch is done. With the
    threshold above a batch's worth, a collection runs only when objects really accumulate."""
    gc.collect()
    gc.freeze()
    first, *rest = gc.get_threshold()
    if batch_objects * 2 > first:
        gc.set_threshold(batch_objects * 2, *rest)


_libc_trim: Callable[[int], int] | None = None


def release_free_heap() -> bool:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim).

    A thread that allocated and freed a lot (a consumer's fetched records, rows in flight)
    leaves the freed memory in its malloc arena, counted as resident for the life of the
    process; trimming returns it. False where there is no glibc (nothing to do there)."""
    global _libc_trim
    if _libc_trim is None:
        import ctypes
        import ctypes.util

        try:
            _libc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _libc_trim = lambda _pad: 0  # noqa: E731 - not glibc
            return False
    return bool(_libc_trim(0))
