"""Running the CLI for the tests: in this process (``run_cli``, the fast default), as a
fresh interpreter (``spawn_cli``), or under torchrun with several ranks.

``run_cli`` calls ``ravlm_bench.cli.main(argv)`` with stdout and stderr captured and hands
back a ``subprocess.CompletedProcess``, so a test reads it as it would a child's. A child
starts from a clean slate; here the call gets one, and everything process-wide that a
command may change is put back afterwards: environment, current directory, ``sys.path``
and the modules imported from plugin files or ``PYTHONPATH`` folders, logging, warnings
filters, signal handlers, torch's thread count and determinism flags, and the random
states of ``random``, NumPy and torch. A call that runs past ``timeout`` is interrupted and
raises ``subprocess.TimeoutExpired``, as a child would. What it cannot do is kill the
command part-way: tests of a killed run use ``cli_command`` with ``subprocess.Popen``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

# The signals a command could take over: their handlers are put back after each call.
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def free_port() -> int:
    """A free TCP port on the loopback address, for a torch.distributed rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(cache: Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment, offline, with its own feature cache when given."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **extra}
    if cache is not None:
        env["RAVLM_BENCH_CACHE"] = str(cache)
    return env


def cli_command(*args: str, processes: int = 1) -> list[str]:
    """``python -m ravlm_bench ARGS``, or the same under torchrun with ``processes`` ranks."""
    if processes == 1:
        return [sys.executable, "-m", "ravlm_bench", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
            "--nproc-per-node", str(processes), "--master-addr", "127.0.0.1",
            "--master-port", str(free_port()), "-m", "ravlm_bench", *args]


def user_signals() -> None:
    """``preexec_fn`` for a spawned CLI: the signal dispositions of a user's terminal. A
    pytest started in the background by a non-interactive shell (as CI may start it) passes
    SIGINT on ignored, and Python then installs no Ctrl-C handler in the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def spawn_cli(*args: str, cache: Path | None = None, env: dict | None = None,
              processes: int = 1, timeout: int = 900, **kwargs) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter (or ``processes`` of them under torchrun)."""
    return subprocess.run(cli_command(*args, processes=processes), capture_output=True,
                          text=True, env=cli_env(cache, **(env or {})), timeout=timeout,
                          preexec_fn=user_signals, **kwargs)


def run_cli(*args: str, cache: Path | None = None, env: dict | None = None,
            processes: int = 1, timeout: int = 900, cwd: Path | str | None = None
            ) -> subprocess.CompletedProcess:
    """The CLI called in this process; torchrun's ranks (``processes`` > 1) are children.

    ``env`` adds to this process's environment for the call; its ``PYTHONPATH`` folders
    go on ``sys.path``, as a child would have them."""
    if processes > 1:
        return spawn_cli(*args, cache=cache, env=env, processes=processes, timeout=timeout,
                         cwd=cwd)
    from ravlm_bench.cli import main

    command = ["ravlm-bench", *args]
    stdout, stderr = io.StringIO(), io.StringIO()
    extra = {"HF_HUB_OFFLINE": "1", **(env or {})}
    if cache is not None:
        extra["RAVLM_BENCH_CACHE"] = str(cache)
    try:
        with _as_a_fresh_process(extra, cwd), _time_limit(timeout):
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                returncode = _exit_status(main, list(args))
    except _RanOverTime:
        raise subprocess.TimeoutExpired(command, timeout, stdout.getvalue(),
                                        stderr.getvalue()) from None
    return subprocess.CompletedProcess(command, returncode, stdout.getvalue(),
                                       stderr.getvalue())


class _RanOverTime(BaseException):
    """Raised into the command when its time is up; not an ``Exception``, so neither the
    CLI nor the code it calls reports it as the command's own error."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def expire(signum, frame):
        raise _RanOverTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _exit_status(main, argv: list[str]) -> int:
    """What the interpreter would exit with: ``main``'s value, ``SystemExit``'s code, or 1
    with the traceback on stderr for an exception that escapes (``--debug`` lets them)."""
    try:
        return int(main(argv) or 0)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc(file=sys.stderr)
        return 1


@contextlib.contextmanager
def _as_a_fresh_process(env: dict[str, str], cwd: Path | str | None) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        stack.enter_context(_environment_kept())  # also what the command sets itself
        for name, value in env.items():
            patch.setenv(name, value)
        if cwd is not None:
            patch.chdir(cwd)
        stack.enter_context(_import_path(env.get("PYTHONPATH", "")))
        stack.enter_context(_logging_as_at_start())
        stack.enter_context(_warnings_as_at_start())
        stack.enter_context(_signals_kept())
        stack.enter_context(_torch_state_kept())
        yield


@contextlib.contextmanager
def _environment_kept() -> Iterator[None]:
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _import_path(pythonpath: str) -> Iterator[None]:
    """``PYTHONPATH`` folders first on ``sys.path``; afterwards the modules imported from
    them or from ``-p FILE.py`` plugin files are forgotten, so the next call's files of the
    same name are imported afresh."""
    folders = [Path(p).resolve() for p in pythonpath.split(os.pathsep) if p]
    saved_path, before = list(sys.path), set(sys.modules)
    sys.path[:0] = [str(folder) for folder in folders]
    importlib.invalidate_caches()  # the folders and files were written just now
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - before:
            origin = getattr(sys.modules[name], "__file__", None)
            if name.startswith("ravlm_local_plugin_") or (origin and any(
                    Path(origin).resolve().is_relative_to(folder) for folder in folders)):
                del sys.modules[name]


@contextlib.contextmanager
def _logging_as_at_start() -> Iterator[None]:
    """No root handlers and level WARNING, as a child starts (so the CLI's ``basicConfig``
    writes to the captured stderr), and the test's own logging back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers[:] = []
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


@contextlib.contextmanager
def _warnings_as_at_start() -> Iterator[None]:
    """The filters a fresh interpreter starts with, warnings printed to the current stderr
    (the captured one) instead of pytest's record; the test's filters back afterwards."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning,
                         DeprecationWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        warnings.showwarning = _show_on_stderr
        yield


def _show_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _signals_kept() -> Iterator[None]:
    saved = {number: signal.getsignal(number) for number in SIGNALS}
    try:
        yield
    finally:
        for number, handler in saved.items():
            if handler is not None:
                signal.signal(number, handler)


@contextlib.contextmanager
def _torch_state_kept() -> Iterator[None]:
    """Thread count, determinism flags and every global random state (``seed_everything``
    sets them for a run)."""
    import numpy as np
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
