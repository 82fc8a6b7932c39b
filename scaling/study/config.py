"""A study as one YAML file: its dataset, protocol, families, MAC points, seeds and search.

A config is read into a :class:`~scaling.study.plan.StudyPreset`; every key is checked, and an
unknown one is a one-line ``ValueError`` naming it and the keys allowed (the ``search:``
section's against :class:`scaling.search.study.SearchConfig`'s fields), so a typo never runs a
different study than the one written. The presets ``tiny``, ``medium`` and ``full`` are such
files in ``scaling/study/presets/``; ``dataset.root`` is relative to the config's folder.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from scaling.study.plan import PAPER, PREFERRED, SEARCHED, StudyPreset, root_spec
from scaling.study.protocol import Protocol

PRESET_DIR = Path(__file__).resolve().parent / "presets"
SECTIONS = ("name", "dataset", "protocol", "seeds", "base_macs", "points", "families", "single",
            "grid", "mac_tol", "res_tol", "jobs", "search")
DATASET_KEYS = ("name", "root", "resolution", "channels", "num_classes")
#: the Protocol fields a config's ``protocol:`` sets (the rest come from other sections)
PROTOCOL_KEYS = ("val_size", "split_seed", "subset", "epochs", "batch_size", "optimizer", "lr",
                 "augment", "test_size", "zero_init_last")
FAMILY_KEYS = ("name", "model", "options", "rule")
#: SearchConfig fields the study sets itself (budget = base_macs, the dataset, the storage)
SEARCH_SET_BY_STUDY = ("budget", "data", "data_root", "resolution", "in_channels", "study",
                       "storage", "resume", "device", "out_dir", "quiet")


def preset_names() -> list[str]:
    """The presets shipped with the package."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


class _Presets(Mapping[str, StudyPreset]):
    """The shipped presets by name, each read from its file on first use."""

    def __init__(self) -> None:
        self._loaded: dict[str, StudyPreset] = {}

    def __getitem__(self, name: str) -> StudyPreset:
        if name not in preset_names():
            raise KeyError(name)
        if name not in self._loaded:
            self._loaded[name] = load_config(PRESET_DIR / f"{name}.yaml")
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(preset_names())

    def __len__(self) -> int:
        return len(preset_names())


PRESETS: Mapping[str, StudyPreset] = _Presets()


def resolve(config: str | Path | StudyPreset) -> StudyPreset:
    """``config`` as a study: a StudyPreset as is, a preset's name, or a YAML file's path."""
    if isinstance(config, StudyPreset):
        return config
    if str(config) in preset_names():
        return PRESETS[str(config)]
    path = Path(config)
    if not path.is_file():
        raise ValueError(f"config={str(config)!r} is neither a preset ({', '.join(preset_names())}"
                         ") nor a YAML file")
    return load_config(path)


def load_config(path: str | Path) -> StudyPreset:
    """The study of the YAML file ``path`` (see the module docstring)."""
    import yaml

    from scaling.ir.spec import _unique_key_loader

    path = Path(path)
    text = path.read_text()
    try:
        raw = yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not a readable YAML file ({' '.join(str(exc).split())})"
                         ) from None
    return from_dict(raw, name=path.stem, folder=path.parent, source=text)


def _keys(where: str, value: Any, allowed: tuple[str, ...] | list[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}={value!r} is not allowed; expected a mapping")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise ValueError(f"{where}.{unknown[0]} is not a known key; expected one of "
                         f"{', '.join(allowed)}")
    return value


def _number(where: str, value: Any, kind: type = float, minimum: float = 0.0,
            strict: bool = True) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok or not math.isfinite(value) or value < minimum or (strict and value == minimum):
        what = ("an int" if kind is int else "a number") + (" > " if strict else " >= ")
        raise ValueError(f"{where}={value!r} is not allowed; expected {what}{minimum:g}")
    return kind(value)


def _dataset(raw: Any, folder: Path | None) -> dict[str, Any]:
    from scaling.data import NATIVE_SHAPE, NUM_CLASSES, dataset_name

    d = _keys("dataset", raw, DATASET_KEYS)
    if "name" not in d:
        raise ValueError(f"dataset.name is missing; expected one of {sorted(NATIVE_SHAPE)}")
    name = dataset_name(str(d["name"]))
    channels, resolution = NATIVE_SHAPE[name]
    if "num_classes" not in d and name not in NUM_CLASSES:
        raise ValueError(f"dataset.num_classes is missing; a {name} dataset has as many classes "
                         "as its tree has folders: give their number")
    root = d.get("root")
    if root is not None:
        root = Path(str(root)).expanduser()
        root = str(root if root.is_absolute() or folder is None else folder / root)
    return {"dataset": name, "data_root": root,
            "resolution": _number("dataset.resolution", d.get("resolution", resolution), int),
            "in_channels": _number("dataset.channels", d.get("channels", channels), int),
            "num_classes": _number("dataset.num_classes",
                                   d.get("num_classes", NUM_CLASSES.get(name)), int, 1.0, False)}


def _protocol(raw: Any) -> dict[str, Any]:
    p = dict(_keys("protocol", raw, PROTOCOL_KEYS))
    for name, kind, minimum, strict in (("val_size", int, 0, False), ("split_seed", int, 0, False),
                                        ("batch_size", int, 1, False), ("epochs", float, 0, True)):
        if name in p:
            p[name] = _number(f"protocol.{name}", p[name], kind, minimum, strict)
            p[name] = int(p[name]) if name == "epochs" and p[name].is_integer() else p[name]
    for name, kind in (("subset", int), ("test_size", int), ("lr", float)):
        if p.get(name) is not None:
            p[name] = _number(f"protocol.{name}", p[name], kind)
    for name in ("augment", "zero_init_last"):
        if name in p and not isinstance(p[name], bool):
            raise ValueError(f"protocol.{name}={p[name]!r} is not allowed; expected true or false")
    if "optimizer" in p and not isinstance(p["optimizer"], str):
        raise ValueError(f"protocol.optimizer={p['optimizer']!r} is not allowed; expected a name")
    return p


def _family(i: int, raw: Any) -> tuple[str, str, dict[str, Any], tuple[float, ...] | None]:
    f = _keys(f"families[{i}]", raw, FAMILY_KEYS)
    if not isinstance(f.get("model"), str):
        raise ValueError(f"families[{i}].model={f.get('model')!r} is not allowed; expected a "
                         "zoo name (python -m scaling.zoo lists them)")
    name = str(f.get("name", f["model"]))
    if name == SEARCHED:
        raise ValueError(f"families[{i}].name={name!r} is not allowed; the searched family is "
                         "always in the study")
    options = f.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"families[{i}].options={options!r} is not allowed; expected a mapping "
                         "of get_spec keywords")
    rule = f.get("rule")
    if rule == "paper":
        rule = PAPER
    if rule is not None:
        if not isinstance(rule, (list, tuple)) or len(rule) != 3:
            raise ValueError(f"families[{i}].rule={rule!r} is not allowed; expected [alpha, "
                             "beta, gamma], 'paper' or none (scaled by width)")
        rule = tuple(_number(f"families[{i}].rule", r) for r in rule)
    return name, f["model"], options, rule


def from_dict(raw: Any, name: str = "study", folder: Path | None = None,
              source: str = "") -> StudyPreset:
    """The study of a parsed config (see the module docstring)."""
    from scaling.search.study import SearchConfig

    c = _keys("config", raw, SECTIONS)
    data = _dataset(c.get("dataset", {"name": "fashion-mnist"}), folder)
    proto = _protocol(c.get("protocol", {}))
    seeds = c.get("seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"seeds={seeds!r} is not allowed; expected a list of ints >= 0")
    points = _number("points", c.get("points", 4), int)
    try:
        protocol = Protocol(**data, **proto, seeds=tuple(seeds), points=points)
    except TypeError as exc:
        raise ValueError(f"protocol: {exc}") from None
    from scaling.cost.units import parse_budget

    base = parse_budget(c.get("base_macs", 1_000_000))
    fams = [_family(i, f) for i, f in enumerate(c.get("families") or [])]
    if not fams:
        raise ValueError("families is empty; expected a list of {name, model, options, rule}")
    names = [f[0] for f in fams]
    if len(set(names)) < len(names):
        raise ValueError(f"families: a name appears twice in {names}")
    single = _keys("single", c.get("single", {}), ("families", "ratios"))
    single_families = tuple(single.get("families", [SEARCHED]))
    for fam in single_families:
        if fam != SEARCHED and fam not in names:
            raise ValueError(f"single.families: {fam!r} is not allowed; expected 'searched' or "
                             f"one of {names}")
    grid = _keys("grid", c.get("grid", {}), ("step", "tol", "mac_tol", "confirm", "prefer",
                                             "margin"))
    prefer = grid.get("prefer")
    if prefer is not None and prefer not in PREFERRED:
        raise ValueError(f"grid.prefer={prefer!r} is not allowed; expected one of "
                         f"{sorted(PREFERRED)} or null")
    search = _keys("search", c.get("search", {}), [
        f.name for f in dataclasses.fields(SearchConfig) if f.name not in SEARCH_SET_BY_STUDY])
    SearchConfig(budget=base, **search)  # its values, checked before anything runs
    study = StudyPreset(
        protocol=protocol, search=dict(search), base_macs=base, points=points,
        single_ratios=tuple(_number("single.ratios", r)
                            for r in single.get("ratios", [2.0, 4.0])),
        single_families=single_families, families=tuple(names),
        grid_step=_number("grid.step", grid.get("step", 0.2)),
        grid_tol=_number("grid.tol", grid.get("tol", 0.15)),
        grid_mac_tol=_number("grid.mac_tol", grid.get("mac_tol", 0.10)),
        grid_confirm=_number("grid.confirm", grid.get("confirm", 1), int),
        grid_prefer=prefer, grid_margin=_number("grid.margin", grid.get("margin", 1.0),
                                                    strict=False),
        mac_tol=_number("mac_tol", c.get("mac_tol", 0.05)),
        res_tol=_number("res_tol", c.get("res_tol", 0.10)),
        jobs=_number("jobs", c.get("jobs", 1), int), name=str(c.get("name", name)),
        roots={n: (model, opts) for n, model, opts, _ in fams},
        rules={n: rule for n, _, _, rule in fams if rule is not None}, source=source)
    for fam in names:  # every family builds at this input before anything runs
        root_spec(fam, study)
    return study
