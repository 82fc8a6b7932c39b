"""The one convention of every ``python -m scaling.*`` command (torch-free, imports nothing heavy).

- :class:`Parser`: an ``argparse`` parser whose help shows every default and whose usage errors
  are one line on stderr with exit code 2 (argparse's own convention, kept to one line).
- :func:`fail` / :class:`UsageError`: bad input is one line ``PROG: error: MESSAGE``, exit 2.
- :func:`command`: wraps ``main(argv) -> int`` so that ``main`` returns the exit code (also for
  ``--help`` and usage errors), a closed pipe (``python -m scaling.zoo | head``) ends quietly,
  Ctrl-C is one line with exit code 130 and an allocation failure one line with exit code 2.
- :func:`check_option` / :func:`check_writable`: numbers finite and in range, output paths
  creatable, checked before any long work.
- :func:`resolve_spec`: a zoo name, a .json/.yaml spec file or a file holding one (a search's
  ``best.json``, ``#N`` picking a trial; a ``train --save`` checkpoint); the zoo is imported
  lazily, so the torch-free layers' CLIs resolve names through here; the zoo's own CLI is
  :mod:`scaling.zoo.cli`, which the zoo package does not import: no circle.
- :func:`add_config_arguments` / :func:`config_from_args`: a config dataclass is the single
  source of its flags, help texts and defaults (``field(metadata={"help": ...})``).
- :func:`format_table`: aligned text tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

#: most torch CPU threads a command accepts (``--threads 100000`` ended in a native error)
MAX_THREADS = 1024


class UsageError(ValueError):
    """Bad command-line input: reported by :func:`command` as one line, exit code 2."""


def one_line(exc: BaseException | str) -> str:
    """An exception's message on one line (a KeyError's without its quotes)."""
    if isinstance(exc, KeyError) and exc.args:
        exc = str(exc.args[0])
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def fail(message: BaseException | str) -> NoReturn:
    """Stop the command with a usage error: one line on stderr, exit code 2."""
    raise UsageError(one_line(message))


def plain(text: str | None) -> str | None:
    """Docstring text for a terminal: RST roles and double backticks removed."""
    if text is None:
        return None
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text).replace("``", "")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option's default appended unless its help names one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if isinstance(action, argparse.BooleanOptionalAction) and isinstance(default, bool):
            return f"{text} (default: {action.option_strings[0 if default else 1]})"
        if (default is argparse.SUPPRESS or default is None or isinstance(default, bool)
                or "default" in text or not action.option_strings):
            return text
        if isinstance(default, (tuple, list)):
            default = ",".join(map(str, default)) or "none"
        return f"{text} (default: {str(default).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :class:`Formatter`; usage errors are one line, exit 2."""

    def __init__(self, prog: str, description: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(prog=prog, description=plain(description), **kwargs)

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def quiet_interrupts() -> None:
    """Drop the "Exception ignored in ... KeyboardInterrupt" report that Python prints when a
    Ctrl-C lands inside a callback it cannot raise from (a weakref callback or ``__del__``: the
    interrupt is lost there; :func:`scaling.search.study` sends its workers a second one); every
    other unraisable exception is reported as before."""
    hook = sys.unraisablehook
    if getattr(hook, "quiet_interrupts", False):
        return

    def quiet(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            hook(unraisable)

    quiet.quiet_interrupts = True  # type: ignore[attr-defined]
    sys.unraisablehook = quiet


def command(prog: str, errors: tuple[type[BaseException], ...] = ()
            ) -> Callable[[Callable[[list[str]], int | None]], Callable[..., int]]:
    """Decorator for ``main(argv)``: returns the exit code in every case.

    :class:`UsageError` and the exception types in ``errors`` (the command's bad input) become
    ``PROG: error: MESSAGE`` on stderr and 2; ``SystemExit`` (``--help``, argparse errors) its
    code; a closed stdout (``BrokenPipeError``) a quiet 1; ``KeyboardInterrupt`` one line and 130.
    """
    def wrap(fn: Callable[[list[str]], int | None]) -> Callable[..., int]:
        @functools.wraps(fn)
        def main(argv: Sequence[str] | None = None) -> int:
            argv = sys.argv[1:] if argv is None else list(argv)
            quiet_interrupts()
            try:
                code = int(fn(argv) or 0)
                sys.stdout.flush()
                return code
            except SystemExit as exc:
                return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BrokenPipeError:
                # the reader went away (``| head``): drop what is left unwritten, no traceback
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                return 1
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            except (UsageError, *errors) as exc:
                print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
                return 2
            except OSError as exc:
                if exc.errno not in WRITE_ERRNOS:
                    raise
                _quiet_stdout()
                where = f" {exc.filename!r}" if exc.filename else ""
                print(f"{prog}: error: cannot write{where}: {exc.strerror or exc}",
                      file=sys.stderr)
                return 2
            except (MemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc):
                    raise
                print(f"{prog}: error: out of memory ({one_line(exc)[:200]}); expected a "
                      "smaller batch, resolution or model", file=sys.stderr)
                return 2

        return main

    return wrap


#: write failures that are the machine's state, not a bug: one line, exit 2 (a full disk, a
#: read-only file system, ``> /dev/full``, a quota, an I/O error)
WRITE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO, errno.EFBIG)


def _quiet_stdout() -> None:
    """If stdout itself failed (``> /dev/full``), point it at /dev/null: its unwritten buffer
    would fail again (a second message) when Python flushes it at exit."""
    try:
        sys.stdout.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (Python's MemoryError, torch's CPU/CUDA OOM)."""
    text = str(exc)
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or \
        "can't allocate memory" in text or "out of memory" in text.lower()


def check_option(name: str, value: Any, minimum: float | None = None,
                 maximum: float | None = None) -> None:
    """A :class:`UsageError` unless the option ``name``'s ``value`` (None: not given) is a finite
    number within [minimum, maximum]."""
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value \
            or value in (float("inf"), float("-inf")):
        fail(f"{name}={value!r} is not allowed; expected a finite number")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "" if minimum is None else f" >= {minimum:g}"
        high = "" if maximum is None else f" <= {maximum:g}"
        fail(f"{name}={value!r} is not allowed; expected a number{low}"
             f"{' and' if low and high else ''}{high}")


def check_writable(name: str, path: str | os.PathLike | None, folder: bool = False) -> None:
    """A :class:`UsageError` unless a file can be created at ``path`` (None: not given), or with
    ``folder``, in the folder ``path`` (created later): checked before any long work, so a typo
    does not cost a training run. The check creates a file (the target if absent, else a hidden
    probe beside it; removed again): ``os.access`` says yes to root on a read-only file system
    or under ``/proc``."""
    if path is None:
        return
    path = os.fspath(path)
    target = os.path.realpath(path)  # a symlink is written through (its target is replaced)
    if os.path.islink(target):  # realpath stops on a link only in a loop
        fail(f"{name} {path!r} cannot be created: {target!r} is a symlink loop")
    if folder:
        if os.path.exists(target) and not os.path.isdir(target):
            fail(f"{name} {path!r} is a file; expected a folder")
        target = os.path.join(target, ".scaling-probe")
    elif os.path.isdir(target):
        fail(f"{name} {path!r} is a folder; expected a file path")
    folder = os.path.dirname(target)
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    if os.path.islink(folder) and not os.path.exists(folder):
        fail(f"{name} {path!r} cannot be created: {folder!r} is a symlink that does not resolve "
             "(a loop or a missing target)")
    if not os.path.isdir(folder):
        fail(f"{name} {path!r} cannot be created: {folder!r} is not a folder")
    probe = target if folder == os.path.dirname(target) and not os.path.lexists(target) \
        else os.path.join(folder, f".{os.path.basename(target)[:200]}.probe-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        fail(f"{name} {path!r} cannot be created: {exc.strerror or exc}")


def parse_number(text: str, name: str) -> float:
    """``text`` as a finite float, or a :class:`UsageError` naming the option ``name``."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        fail(f"{name}={text!r} is not a number")
    if value != value or value in (float("inf"), float("-inf")):
        fail(f"{name}={text!r} is not allowed; expected a finite number")
    return value


def is_spec_path(name: str) -> bool:
    """Whether ``name`` names a spec file or a checkpoint rather than a zoo model
    (:func:`scaling.ir.is_spec_path`)."""
    from scaling.ir import is_spec_path as spec_path

    return spec_path(name)


def resolve_spec(name_or_path: str, flag: str = "model", **overrides: Any) -> Any:
    """A :class:`~scaling.ir.NetworkSpec` from a zoo name (with ``get_spec`` overrides), a spec
    file or a file the package wrote that holds one (a search's ``best.json``, ``#N`` picking
    trial N; its ``--json`` report; a ``train --save`` checkpoint), used as written; bad input
    is a :class:`UsageError` naming ``flag`` and the file."""
    if is_spec_path(name_or_path):
        from scaling.ir import is_checkpoint_path, load_spec, parse_spec_path

        path = parse_spec_path(name_or_path)[0]
        if os.path.exists(path) and not os.path.isfile(path):
            kind = "a folder" if os.path.isdir(path) else "not a regular file (a FIFO, " \
                "socket or device)"
            fail(f"{flag} {path!r} is {kind}; expected a .json/.yaml spec file")
        if not os.path.isfile(path):
            fail(f"{flag} {name_or_path!r}: no such spec file")
        try:
            if is_checkpoint_path(name_or_path):
                from scaling.zoo.checkpoint import checkpoint_spec

                return checkpoint_spec(name_or_path)
            return load_spec(name_or_path)
        except (ValueError, TypeError, KeyError, OSError, RecursionError) as exc:
            message = one_line(exc)
            fail(message if repr(name_or_path) in message else f"{flag} {name_or_path!r}: "
                 f"{message}")
    from scaling.zoo import get_spec

    try:
        return get_spec(name_or_path, **overrides)
    except (ValueError, TypeError, KeyError) as exc:
        message = one_line(exc)
        fail(message if repr(name_or_path) in message else f"{flag} {name_or_path!r}: {message}")


# -- config dataclasses as the source of flags ------------------------------------------------
_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def _cli_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def _argument_type(fn: Callable[[str], Any]) -> Callable[[str], Any]:
    """``fn`` whose ValueError/TypeError argparse reports with its message."""
    def parse(text: str) -> Any:
        try:
            return fn(text)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise argparse.ArgumentTypeError(one_line(exc)) from None

    parse.__name__ = getattr(fn, "__name__", "value")
    return parse


def _field_type(f: dataclasses.Field) -> Callable[[str], Any]:
    if "type" in f.metadata:
        return _argument_type(f.metadata["type"])
    name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
    base = name.replace(" | None", "").replace("None | ", "").strip()
    return _TYPES.get(base, str)


def add_config_arguments(parser: argparse.ArgumentParser | Any, cls: type,
                         skip: Iterable[str] = ()) -> None:
    """One option per field of the dataclass ``cls`` (``--field-name``, or
    ``metadata["flag"]``), with ``metadata["help"]``, the field default, and ``metadata["type"]``
    / ``["choices"]`` where given; bool fields get ``--x/--no-x``; ``metadata["cli"] = False``
    and ``skip`` leave a field out."""
    skipped = set(skip)
    for f in _cli_fields(cls):
        if f.name in skipped:
            continue
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} has no metadata['help']")
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": f.metadata["help"]}
        if _field_type(f) is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _field_type(f)
            kwargs["metavar"] = f.metadata.get("metavar")
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(flag, **kwargs)


def config_from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """The ``cls`` instance of the parsed ``args`` (fields without a flag keep their default)."""
    values = {f.name: getattr(args, f.name) for f in _cli_fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **extra})


# -- tables -----------------------------------------------------------------------------------
def count_of(n: float | None, noun: str) -> str:
    """``1 epoch``, ``2 epochs``, ``0.5 epochs``: a count and its noun, plural unless exactly
    one (``None``: ``? epochs``)."""
    if n is None:
        return f"? {noun}s"
    return f"{n:g} {noun}{'' if n == 1 else 's'}"


def format_cell(value: Any) -> str:
    """int -> 1,234; float -> 4 decimals; None -> '-'; anything else str()."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def format_table(header: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1,
                 rules: Iterable[int] = ()) -> str:
    """Aligned columns: the first ``left`` left-justified, the others right-justified; a dashed
    rule after each body row index in ``rules`` (-1: after the header)."""
    body = [[c if isinstance(c, str) else format_cell(c) for c in row] for row in rows]
    cells = [list(header)] + body
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    after = set(rules)
    lines = []
    for j, row in enumerate(cells):
        lines.append("  ".join(v.ljust(w) if i < left else v.rjust(w)
                               for i, (v, w) in enumerate(zip(row, widths))).rstrip())
        if j - 1 in after:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
