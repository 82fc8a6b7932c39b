"""Run commands of the form ``python -m MODULE ...`` / ``python SCRIPT ...`` in forks of one
interpreter that imported torch, Optuna, pandas and matplotlib once (the README test's runner).

A fresh ``python`` spends 3-5 CPU seconds importing these, and its first optimizer another 2
importing ``torch._dynamo``; the README test runs about 30 commands, so a fork per command
saves most of a minute of CPU per run of the suite. The child is the command as ``python``
would run it: ``sys.argv`` as given, ``__main__`` the module or script (:mod:`runpy`), the same
working directory and environment, its own stdout/stderr files, its exit status.

Protocol, one JSON object a line: the parent writes ``{"argv": [...], "out": PATH, "err": PATH}``
to stdin and reads ``{"status": N}`` back.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import traceback

PRELOAD = ("torch", "torch._dynamo", "torch.optim", "optuna", "pandas", "matplotlib.pyplot",
           "sqlalchemy", "yaml", "tqdm", "scaling", "scaling.search.study", "scaling.train.trainer",
           "scaling.data")


def run_child(argv: list[str], out: str, err: str) -> None:
    """In the forked child: redirect stdio, run ``argv`` as ``python`` would, exit with its
    status (never returns)."""
    status = 1
    try:
        for fd, path in ((1, out), (2, err)):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(handle, fd)
            os.close(handle)
        sys.stdin = open(os.devnull)  # noqa: SIM115 - the child's, closed at exit
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
            runpy.run_path(argv[0], run_name="__main__")
        status = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            status = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:  # the traceback python would print, then its exit status
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


def serve() -> None:
    for name in PRELOAD:
        __import__(name)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            run_child(request["argv"], request["out"], request["err"])
        _, wait_status = os.waitpid(pid, 0)
        print(json.dumps({"status": os.waitstatus_to_exitcode(wait_status)}), flush=True)


if __name__ == "__main__":
    serve()
