"""Running ``ravlm-bench`` for a case: a new interpreter per call, or a child forked from a
warm server (fork_server.py) that has already imported the heavy libraries."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# where the server is started, so that ``python -m fault_injection`` finds this package
TESTS = Path(__file__).resolve().parents[1]

CALL_TIMEOUT_S = 600


@dataclass
class Finished:
    """One CLI call as it ended; ``rc`` None: it did not end within its time."""

    args: list[str]
    rc: int | None
    stdout: str
    stderr: str
    seconds: float


class PopenChild:
    def __init__(self, args: list[str], env: dict, cwd: Path, out: Path, err: Path):
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            self._popen = subprocess.Popen(
                [sys.executable, "-m", "ravlm_bench", *args], env=env, cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float) -> int | None:
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> int:
        # Popen never signals a process it has already reaped, so no reused pid is hit
        self._popen.kill()
        return self._popen.wait()


class ForkServer:
    """A process that has imported the heavy libraries once and forks a child per call.

    The server, not this process, signals and reaps its children: it only reaps a child
    once it has exited, so a kill can never reach a reused process id.
    """

    def __init__(self, env: dict):
        self._process = subprocess.Popen(
            [sys.executable, "-m", "fault_injection", "--fork-server"], env=env, cwd=TESTS,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._buffer = b""
        ready = self._reply(timeout=300)
        if ready != {"ready": True}:
            raise RuntimeError(f"the fork server did not start: {ready}")

    def start(self, args: list[str], env: dict, cwd: Path, out: Path, err: Path):
        self._send({"run": {"args": args, "env": env, "cwd": str(cwd), "stdout": str(out),
                            "stderr": str(err)}})
        self._reply(timeout=60)
        return ForkedChild(self)

    def _send(self, message: dict) -> None:
        self._process.stdin.write((json.dumps(message) + "\n").encode())
        self._process.stdin.flush()

    def _reply(self, timeout: float) -> dict:
        fd = self._process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise RuntimeError("the fork server did not answer")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("the fork server died")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def ask(self, command: str) -> int | None:
        self._send({command: True})
        return self._reply(timeout=120)["rc"]

    def close(self) -> None:
        self._process.stdin.close()
        self._process.wait(60)


class ForkedChild:
    def __init__(self, server: ForkServer):
        self._server = server
        self._rc: int | None = None

    def poll(self) -> int | None:
        if self._rc is None:
            self._rc = self._server.ask("poll")
        return self._rc

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)
        return self._rc

    def kill(self) -> int:
        if self._rc is None:
            self._rc = self._server.ask("kill")
        return self._rc


class Launcher:
    """Starts ``ravlm-bench ARGS`` as a child with its own environment; logs every call.

    A fork server holds the code it imported: when a source file of ravlm_bench or its
    plugins changes (someone edits the tree during a long run), it is started again, so no
    child runs stale code."""

    def __init__(self, logs: Path, fresh: bool, env: dict):
        self.logs = logs
        self.calls = 0
        self.env = env
        self.sources = source_stamp()
        self.server = None if fresh else ForkServer(env)

    @property
    def mode(self) -> str:
        return "fresh processes" if self.server is None else "forked from a warm server"

    def start(self, args: list[str], env: dict, cwd: Path):
        self.calls += 1
        out, err = self.log_paths(self.calls)
        if self.server is None:
            return PopenChild(args, env, cwd, out, err)
        if source_stamp() != self.sources:
            self.server.close()
            self.sources = source_stamp()
            self.server = ForkServer(self.env)
        return self.server.start(args, env, cwd, out, err)

    def log_paths(self, call: int) -> tuple[Path, Path]:
        return self.logs / f"call-{call:04d}.out", self.logs / f"call-{call:04d}.err"

    def finish(self, args: list[str], started: float, rc: int | None) -> Finished:
        """The latest call as it ended (calls run one at a time)."""
        out, err = self.log_paths(self.calls)
        return Finished(args, rc, out.read_text(errors="replace"),
                        err.read_text(errors="replace"), time.monotonic() - started)

    def run(self, args: list[str], env: dict, cwd: Path,
            timeout: float = CALL_TIMEOUT_S) -> Finished:
        started = time.monotonic()
        child = self.start(args, env, cwd)
        rc = child.wait(timeout)
        if rc is None:
            child.kill()
        return self.finish(args, started, rc)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def source_stamp() -> tuple:
    """(path, mtime_ns) of every Python file of ravlm_bench and the reference plugins."""
    import importlib.util

    stamp = []
    for package in ("ravlm_bench", "ravlm_plugins"):
        spec = importlib.util.find_spec(package)
        for folder in spec.submodule_search_locations if spec else ():
            stamp += [(str(p), p.stat().st_mtime_ns) for p in sorted(Path(folder).rglob("*.py"))]
    return tuple(stamp)
