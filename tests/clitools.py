"""Running the real CLI in a subprocess, once or under torchrun: shared by the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


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


def run_cli(*args: str, cache: Path | None = None, env: dict | None = None,
            processes: int = 1, timeout: int = 900, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args, processes=processes), capture_output=True,
                          text=True, env=cli_env(cache, **(env or {})), timeout=timeout,
                          **kwargs)
