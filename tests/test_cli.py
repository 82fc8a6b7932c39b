"""The one CLI convention (scaling/cli.py) held by every command: --help documents every option
with its default and imports no torch, one-line errors, a quiet closed pipe; config dataclasses
as the single source of their flags; train's --test-size; the search creates its folders."""

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.cli import (
    Parser,
    UsageError,
    add_config_arguments,
    command,
    config_from_args,
    format_table,
)
from scaling.search.config import SearchConfig
from scaling.train.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["train", "search", "compound", "zoo", "profile", "analysis", "bench"]


def _main(name: str):
    import importlib

    module = {"train": "scaling.train.cli", "search": "scaling.search.cli",
              "compound": "scaling.compound.cli", "zoo": "scaling.zoo.cli",
              "profile": "scaling.cost.profile", "analysis": "scaling.study.analysis",
              "bench": "scaling.bench"}[name]
    return importlib.import_module(module).main


def _parsers(name: str) -> list[argparse.ArgumentParser]:
    """The command's parser and its subcommands' parsers."""
    import importlib

    if name in ("zoo", "analysis"):
        return []  # built inside main(); covered by the --help output test
    module = importlib.import_module(_main(name).__module__)
    todo, out = [module.build_parser()], []
    while todo:
        p = todo.pop()
        out.append(p)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += list(action.choices.values())
    return out


@pytest.mark.parametrize("name", COMMANDS)
def test_help_exits_0_and_reads_as_text(name, capsys):
    assert _main(name)(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m scaling.") and "``" not in out and ":func:" not in out


@pytest.mark.parametrize("name", ["train", "search", "compound", "profile", "bench"])
def test_every_option_has_help_and_shows_its_default(name):
    parsers = _parsers(name)
    assert parsers
    for p in parsers:
        formatter = p._get_formatter()
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            where = f"{p.prog} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, f"{where} has no help text"
            if action.option_strings and not isinstance(action, argparse._StoreTrueAction):
                text = formatter._get_help_string(action)
                assert "default" in text or text.endswith("required"), \
                    f"{where}: no default shown in {text!r}"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_imports_no_torch(name):
    code = ("import runpy, sys; sys.modules['torch'] = None; "  # any 'import torch' fails
            f"sys.argv = ['scaling.{name}', '--help']; "
            f"runpy.run_module('scaling.{name}', run_name='__main__')")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage:" in res.stdout


def test_closed_pipe_gives_no_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "scaling.zoo"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes (like `| head -0`)
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_command_wrapper_codes(capsys):
    @command("prog", errors=(KeyError,))
    def main(argv):
        if argv == ["usage"]:
            raise UsageError("bad\n  input")
        if argv == ["key"]:
            raise KeyError("no such thing")
        if argv == ["bug"]:
            raise RuntimeError("a bug stays a traceback")
        if argv == ["stop"]:
            raise KeyboardInterrupt
        return 0

    assert main([]) == 0
    assert main(["usage"]) == 2 and capsys.readouterr().err == "prog: error: bad input\n"
    assert main(["key"]) == 2 and capsys.readouterr().err == "prog: error: no such thing\n"
    assert main(["stop"]) == 130 and capsys.readouterr().err == "prog: interrupted\n"
    with pytest.raises(RuntimeError):
        main(["bug"])


@pytest.mark.parametrize("cls", [TrainConfig, SearchConfig])
def test_config_is_the_single_source_of_its_flags(cls):
    p = Parser("prog")
    add_config_arguments(p, cls)
    cli_fields = [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]
    assert {a.dest for a in p._actions} >= {f.name for f in cli_fields}
    budget = ["--epochs", "1"] if cls is TrainConfig else []
    assert config_from_args(cls, p.parse_args(budget)) == cls(**({"epochs": 1.0} if budget
                                                                 else {}))


def test_flags_convert_to_field_values():
    p = Parser("prog")
    add_config_arguments(p, SearchConfig)
    cfg = config_from_args(SearchConfig, p.parse_args(
        ["--budget", "1.5M", "--proxies", "none", "--subset", "0", "--out", "x", "--augment"]))
    assert (cfg.budget, cfg.proxies, cfg.subset, cfg.out_dir, cfg.augment) == (
        1_500_000, (), None, "x", True)
    p = Parser("prog")
    add_config_arguments(p, TrainConfig)
    cfg = config_from_args(TrainConfig, p.parse_args(
        ["--samples", "64", "--channels-last", "off", "--no-augment", "--workers", "2"]))
    assert (cfg.samples, cfg.channels_last, cfg.augment, cfg.num_workers) == (64, False, False, 2)
    with pytest.raises(SystemExit):
        p.parse_args(["--channels-last", "sideways"])


def test_format_table_aligns():
    text = format_table(["name", "n", "x"], [["a", 1234, 0.5], ["long name", 5, None]], left=1)
    lines = text.splitlines()
    assert lines[0].startswith("name     ") and lines[1].endswith("1,234  0.5000")
    assert lines[2].startswith("long name") and lines[2].endswith("-")
    assert len({len(line) for line in lines}) == 1


def test_train_test_size_limits_the_test_set(tmp_path, capsys):
    from idx_files import make_idx_dir

    from scaling.train.cli import main

    root = make_idx_dir(tmp_path / "fm", n_train=96, n_test=40)
    rc = main(["mobilenet_v2_x0_5", "--data-root", str(root), "--samples", "32", "--batch-size",
               "32", "--val-size", "16", "--precise-bn", "1", "--threads", "1", "--device", "cpu",
               "--test-size", "7", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["test_images"] == 7
    assert abs(out["test_top1"] * 7 - round(out["test_top1"] * 7)) < 1e-9  # k correct out of 7
    assert out["wall_time"] >= out["train_time"]


def test_search_creates_a_nested_out_folder_and_sqlite_folder(tmp_path, capsys):
    from scaling.search.cli import main

    out = tmp_path / "new" / "nested"
    rc = main(["--evaluator", "zero-cost", "--proxies", "params", "--rank-proxy", "params",
               "--budget", "3M", "--trials", "1", "--threads", "1", "--quiet", "--out", str(out),
               "--storage", f"sqlite:///{out}/db/s.db", "--study", "n"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert (out / "db" / "s.db").is_file() and (out / "n.csv").is_file()
    assert "trials: 1 complete" in printed and "{" not in printed  # block strings, not JSON


def test_a_ctrl_c_inside_a_finaliser_is_not_reported_but_other_errors_are(monkeypatch, capsys):
    """``quiet_interrupts``: a KeyboardInterrupt Python cannot raise (a weakref callback or
    ``__del__``) prints no "Exception ignored in" traceback; any other exception still does."""
    import gc

    from scaling.cli import quiet_interrupts

    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    quiet_interrupts()
    quiet_interrupts()  # idempotent: one wrapper

    class Interrupted:
        def __del__(self):
            raise KeyboardInterrupt

    class Broken:
        def __del__(self):
            raise ValueError("reported")

    Interrupted()
    gc.collect()
    assert "KeyboardInterrupt" not in capsys.readouterr().err
    Broken()
    gc.collect()
    assert "ValueError: reported" in capsys.readouterr().err
