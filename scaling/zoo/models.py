"""The model zoo: every family model by name, with overrides (CLI: :mod:`scaling.zoo.cli`).

``get_spec(name, **overrides)`` returns the family's :class:`~scaling.ir.spec.NetworkSpec`
(torchvision defaults, 1000 classes, its evaluation resolution) with overrides applied:

- family parameters, as the family defines them (absolute, not relative): ``width`` / ``depth``
  (MobileNet, MNASNet, EfficientNet, ShuffleNetV1), ``size`` (ShuffleNetV2, MobileNetV3,
  EfficientNetV2), ResNet's ``layers``, ``groups``, ``width_per_group``, ``deep_stem``,
  ``avg_down``; other multipliers: :func:`scaling.compound.rule.scale`;
- generic: ``num_classes``, ``in_chans``, ``resolution``, ``norm`` (NormSpec, dict or type name),
  ``activation`` (replaces the stem, stage and head activations; SE keeps its own),
  ``drop_path_rate``, ``dropout``, and the small-input adaptation ``small_input=True`` (every stem
  conv at stride 1, no stem max pool: for 28x28 / 32x32 inputs) or, separately, ``stem_stride``
  and ``stem_pool`` (None or 'max').

``create_model(name_or_spec, **overrides)`` builds it (:func:`scaling.nn.build.build_model`), also
taking the builder's ``out_indices``, ``frozen_stages``, ``norm_eval`` and ``with_cp``, and timm's
``features_only`` and ``pretrained`` (a path to a state dict). Names may be timm's
(:mod:`scaling.zoo.aliases`); ``list_models`` takes timm's fnmatch patterns.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
import re
from collections.abc import Iterable
from typing import Any

from scaling.ir import NetworkSpec, NormSpec
from scaling.zoo.aliases import ALIASES, OVERRIDES, preprocessing, resolve
from scaling.zoo.families import Factory, all_models

GENERIC = ("num_classes", "in_chans", "resolution", "norm", "activation", "drop_path_rate",
           "dropout", "small_input", "stem_stride", "stem_pool")
BUILD_KWARGS = ("out_indices", "frozen_stages", "norm_eval", "with_cp", "zero_init_last",
                "global_pool")
#: factory parameters that select the model and are not offered as overrides
_HIDDEN = ("table", "variant", "params")

_MODELS = all_models()


def _patterns(value: str | Iterable[str] | None, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    patterns = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"{field} must be a pattern or a list of patterns, got {value!r}")
    return patterns


def _families() -> set[str]:
    return {_spec_of(n).family for n in _MODELS}


def _natural_key(name: str) -> list[Any]:
    """Sort key that orders digit runs by value ('resnet18' before 'resnet101'), as timm's."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", name.lower())]


def list_models(filter: str | Iterable[str] | None = None,  # noqa: A002 (timm's name)
                exclude: str | Iterable[str] | None = None,
                family: str | None = None, *, pretrained: bool = False,
                exclude_filters: str | Iterable[str] | None = None) -> list[str]:
    """Model names in natural order ('resnet18' before 'resnet101'), as timm's ``list_models``:
    ``filter`` and ``exclude`` (or timm's ``exclude_filters``) are fnmatch patterns (or lists of
    them); a pattern also matches timm aliases, and a name without wildcards only itself (so
    ``list_models('resnet')`` is empty, as in timm; ``family='resnet'`` keeps one family).
    ``pretrained=True`` lists the models with weights to download: none, since nothing is
    downloaded (load a state dict file with ``create_model(name, pretrained=path)``)."""
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be a bool, got {pretrained!r}")
    patterns = _patterns(filter, "filter")
    excluded = _patterns(exclude, "exclude") + _patterns(exclude_filters, "exclude_filters")
    names = list(_MODELS)
    if family is not None:
        names = [n for n in names if _spec_of(n).family == family]
        if not names:
            raise ValueError(f"family={family!r} is not known; expected one of "
                             f"{sorted(_families())}")
    if patterns:
        pool = names + ([a for a in ALIASES if resolve(a)[0] in names])
        names = [n for n in pool if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if pretrained:
        names = []
    names = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in excluded)]
    return sorted(names, key=_natural_key)


def _entry(name: str) -> tuple[Factory, dict[str, Any]]:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__} {name!r}")
    if name not in _MODELS:
        close = difflib.get_close_matches(name, [*_MODELS, *ALIASES], n=5, cutoff=0.5)
        hint = f"; close matches: {close}" if close else ""
        raise ValueError(f"model {name!r} is not known{hint}. See scaling.list_models() "
                         f"({len(_MODELS)} models)")
    return _MODELS[name]


def _spec_of(name: str) -> NetworkSpec:
    factory, kwargs = _entry(name)
    return factory(**kwargs).replace(name=name)


def family_params(name: str) -> tuple[str, ...]:
    """The family parameters that ``get_spec(name, ...)`` accepts besides the generic ones."""
    factory, _ = _entry(name)
    params = inspect.signature(factory).parameters
    return tuple(p for p in params if p not in _HIDDEN and p not in GENERIC)


def _norm(value: Any) -> NormSpec:
    if isinstance(value, NormSpec):
        return value
    if isinstance(value, str):
        return NormSpec(type=value)
    if isinstance(value, dict):
        return NormSpec.from_dict(value, "norm")
    raise TypeError(f"norm must be a NormSpec, a dict or a norm type name, got "
                    f"{type(value).__name__} {value!r}")


def apply_overrides(spec: NetworkSpec, **overrides: Any) -> NetworkSpec:
    """``spec`` with the generic overrides (see the module docstring) applied."""
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
    unknown = sorted(set(overrides) - set(GENERIC))
    if unknown:
        raise TypeError(f"unknown override(s) {unknown}; allowed: {list(GENERIC)}")
    o = dict(overrides)
    top: dict[str, Any] = {}
    for key, field in (("num_classes", "num_classes"), ("in_chans", "in_channels"),
                       ("resolution", "resolution"), ("drop_path_rate", "drop_path_rate")):
        if key in o:
            top[field] = o[key]
    if "norm" in o:
        top["norm"] = _norm(o["norm"])
    stem, head, stages = spec.stem, spec.head, spec.stages
    if "activation" in o:
        act = o["activation"]
        stem = stem.replace(activation=act)
        stages = tuple(s.replace(activation=act) for s in stages)
        head = head.replace(activation=act, hidden_activation=act)
    if "dropout" in o:
        head = head.replace(dropout=o["dropout"])
    small = o.get("small_input", False)
    if not isinstance(small, bool):
        raise TypeError(f"small_input must be a bool, got {small!r}")
    if small:
        stem = stem.replace(strides=(1,) * len(stem.strides), pool=None)
    if "stem_stride" in o:
        stem = stem.replace(strides=(o["stem_stride"],) + stem.strides[1:])
    if "stem_pool" in o:
        stem = stem.replace(pool=o["stem_pool"])
    return spec.replace(stem=stem, head=head, stages=stages, **top)


def get_spec(name: str, **overrides: Any) -> NetworkSpec:
    """The spec of model ``name`` (a zoo name or a timm alias, see :mod:`scaling.zoo.aliases`)
    with ``overrides`` (family parameters and generic ones)."""
    if isinstance(name, str) and resolve(name)[0] != name:
        zoo_name, replace = resolve(name)
        replace = {k: v for k, v in replace.items() if k not in overrides}
        generic = {k: replace.pop(k) for k in OVERRIDES if k in replace}
        spec = get_spec(zoo_name, **generic, **overrides)
        return spec.replace(name=name.split(".", 1)[0], **replace)
    factory, kwargs = _entry(name)
    allowed = family_params(name)
    unknown = sorted(set(overrides) - set(allowed) - set(GENERIC))
    if unknown:
        raise TypeError(f"unknown override(s) {unknown} for model {name!r}; allowed: "
                        f"{list(allowed) + list(GENERIC)}")
    family = {k: v for k, v in overrides.items() if k in allowed}
    generic = {k: v for k, v in overrides.items() if k in GENERIC}
    spec = factory(**{**kwargs, **family}).replace(name=name)
    return apply_overrides(spec, **generic)


def create_model(name_or_spec: str | os.PathLike | NetworkSpec | dict,
                 pretrained: bool | str | os.PathLike = False, features_only: bool = False,
                 checkpoint_path: str | os.PathLike | None = None, drop_rate: float | None = None,
                 output_stride: int = 32, exportable: bool = False, scriptable: bool = False,
                 pretrained_cfg_overlay: dict[str, Any] | None = None, **overrides: Any):
    """Build a model from a zoo name, a timm alias, a spec (dict accepted) or a file that holds
    one, with overrides, the builder's ``out_indices``/``frozen_stages``/``norm_eval``/
    ``with_cp``/``zero_init_last`` and timm's arguments:

    - a file: a spec .json/.yaml, a search's ``<study>.best.json`` or ``--json`` report
      (``'found.best.json#N'`` picks trial N of a Pareto front; :func:`scaling.ir.load_spec`), or
      a ``python -m scaling.train --save`` checkpoint, which stores its spec: the model is built
      from it and its weights are loaded (``create_model('run.pt')``);
    - ``checkpoint_path``: a checkpoint in the model's own layout, loaded strictly after the
      model is built (timm's convention; :func:`scaling.zoo.checkpoint.load_checkpoint`), or a
      state dict of timm's or torchvision's model, converted as ``pretrained`` converts it;
    - ``features_only=True``: a :class:`~scaling.nn.build.FeatureNet` returning the
      ``out_indices`` stages' feature maps (default: every stage), with ``feature_info``;
    - ``pretrained``: a path to a state dict (``torch.load(weights_only=True)``) in the model's
      own layout, torchvision's or timm's, recognised from its keys and converted by
      :mod:`scaling.zoo.weights` (:mod:`scaling.zoo.pretrained`); a timm file builds timm's model
      of the name; with ``in_chans`` other than the file's 3, the first conv is adapted as timm
      does (1 channel: the RGB filters summed); the classifier is replaced when ``num_classes``
      differs. Nothing is downloaded: ``pretrained=True`` needs the overlay's ``file``;
    - timm's ``drop_rate`` (the classifier's dropout: the ``dropout`` override),
      ``global_pool`` ('avg', 'max', 'avgmax', 'catavgmax', '': none; the builder's),
      ``output_stride`` (32 only: timm dilates the stages it unstrides except their first
      block, which a stage's one ``dilation`` cannot express), ``exportable`` and
      ``scriptable`` (accepted, they change nothing: every model traces and exports as built,
      and ``torch.jit.script`` is refused in one line either way); ``pretrained_cfg_overlay``
      (a dict merged into the model's ``pretrained_cfg``; its ``file`` is the state dict that
      ``pretrained=True`` loads).

    An alias reports timm's preprocessing in ``pretrained_cfg``
    (:func:`scaling.zoo.aliases.preprocessing`).
    """
    from scaling.nn.features import feature_levels

    _timm_keywords(drop_rate, output_stride, exportable, scriptable, overrides)
    build = {k: overrides.pop(k) for k in BUILD_KWARGS if k in overrides}
    if not isinstance(features_only, bool):
        raise TypeError(f"features_only must be a bool, got {features_only!r}")
    if isinstance(name_or_spec, os.PathLike):
        name_or_spec = os.fspath(name_or_spec)
    if isinstance(name_or_spec, str) and _is_file_name(name_or_spec):
        spec, stored = _file_spec(name_or_spec)
        spec = apply_overrides(spec, **overrides)
        if stored and checkpoint_path is None and pretrained is False:
            checkpoint_path = name_or_spec
    elif isinstance(name_or_spec, str):
        spec = get_spec(name_or_spec, **overrides)
    elif isinstance(name_or_spec, (NetworkSpec, dict)):
        if isinstance(name_or_spec, dict):
            name_or_spec = NetworkSpec.from_dict(name_or_spec)
        spec = apply_overrides(name_or_spec, **overrides)
    else:
        raise TypeError("name_or_spec must be a model name, a spec file, a NetworkSpec or its "
                        f"dict, got {type(name_or_spec).__name__}")
    if features_only and build.get("out_indices") is None:
        build["out_indices"] = tuple(range(len(feature_levels(spec))))
    overlay, pretrained = _overlay(pretrained_cfg_overlay, pretrained)
    model = _create(name_or_spec, spec, pretrained, checkpoint_path, build, overrides)
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict):
        if isinstance(name_or_spec, str) and not _is_file_name(name_or_spec):
            cfg.update(preprocessing(name_or_spec))
        cfg.update(overlay)
    return model


def _overlay(overlay: dict[str, Any] | None,
             pretrained: bool | str | os.PathLike) -> tuple[dict[str, Any], Any]:
    """timm's ``pretrained_cfg_overlay`` checked, and ``pretrained`` with ``True`` turned into
    the overlay's ``file``."""
    if overlay is None:
        overlay = {}
    if not isinstance(overlay, dict):
        raise TypeError(f"pretrained_cfg_overlay must be a dict, got "
                        f"{type(overlay).__name__} {overlay!r}")
    if pretrained is True:
        if "file" not in overlay:
            raise ValueError("pretrained=True is not allowed without pretrained_cfg_overlay="
                             "dict(file=PATH): nothing is downloaded; give the state dict file")
        pretrained = overlay["file"]
    return dict(overlay), pretrained


def _create(name_or_spec: Any, spec: NetworkSpec, pretrained: Any,
            checkpoint_path: str | os.PathLike | None, build: dict[str, Any],
            overrides: dict[str, Any]):
    """The model of ``spec``, with the weights ``pretrained`` or ``checkpoint_path`` names."""
    from scaling.nn.build import build_model

    if checkpoint_path is not None:
        if pretrained is not False and pretrained is not None:
            raise ValueError("pretrained and checkpoint_path are both given; expected one")
        if _own_keys(checkpoint_path):
            return _checkpointed(spec, checkpoint_path, build)
        pretrained = checkpoint_path  # timm's or torchvision's layout: converted
    if pretrained is False or pretrained is None:
        return build_model(spec, **build)
    if pretrained is True or not isinstance(pretrained, (str, os.PathLike)):
        raise ValueError(f"pretrained={pretrained!r} is not allowed; expected False or the path "
                         "of a state dict file (nothing is downloaded)")
    from scaling.zoo.pretrained import load_pretrained

    name = (name_or_spec if isinstance(name_or_spec, str) and not _is_file_name(name_or_spec)
            else None)
    return load_pretrained(spec, pretrained, name, overrides.get("num_classes"), build,
                           overridden=set(overrides))


def _timm_keywords(drop_rate: float | None, output_stride: int, exportable: bool,
                   scriptable: bool, overrides: dict[str, Any]) -> None:
    """Check timm's keywords of :func:`create_model`; ``drop_rate`` becomes ``dropout``."""
    for key, value in (("exportable", exportable), ("scriptable", scriptable)):
        if not isinstance(value, bool):
            raise TypeError(f"{key} must be a bool, got {value!r}")
    if output_stride != 32:
        raise ValueError(f"output_stride={output_stride!r} is not supported; expected 32 (a "
                         "dilated backbone would need timm's per-block dilation, which the "
                         "IR's one dilation per stage cannot express)")
    if drop_rate is not None:
        if "dropout" in overrides:
            raise ValueError(f"drop_rate={drop_rate!r} and dropout={overrides['dropout']!r} are "
                             "both given; they are the same (classifier dropout): give one")
        overrides["dropout"] = drop_rate


def _is_file_name(name: str) -> bool:
    """Whether ``name`` names a file rather than a zoo model (a spec file, ``x.json#N`` or a
    checkpoint)."""
    from scaling.ir import is_spec_path

    return is_spec_path(name)


def _file_spec(path: str) -> tuple[NetworkSpec, bool]:
    """The spec in the file ``path`` and whether it came from a checkpoint (whose weights then
    load too); errors are ValueErrors naming the file."""
    from scaling.ir import is_checkpoint_path, load_spec, parse_spec_path

    if is_checkpoint_path(path):
        from scaling.zoo.checkpoint import checkpoint_spec

        return checkpoint_spec(path), True
    if not os.path.isfile(parse_spec_path(path)[0]):
        raise ValueError(f"model {path!r} is neither a zoo name nor an existing spec file")
    return load_spec(path), False


def _own_keys(path: str | os.PathLike) -> bool:
    """Whether the checkpoint at ``path`` is in the IR's layout (else it is read as
    timm's or torchvision's layout, told apart by the IR's first key)."""
    from scaling.zoo.checkpoint import load_checkpoint_state

    state = load_checkpoint_state(path)
    return "stem.0.0.weight" in state


def _checkpointed(spec: NetworkSpec, path: str | os.PathLike, build: dict[str, Any]):
    """The model of ``spec`` with the checkpoint at ``path`` loaded strictly (a features model
    takes the full model's weights of its layers)."""
    from scaling.nn.build import build_model
    from scaling.zoo.checkpoint import load_checkpoint

    features = build.get("out_indices") is not None
    full = build_model(spec, **({} if features else build))
    load_checkpoint(full, path)
    if not features:
        return full
    model = build_model(spec, **build)
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in full.state_dict().items() if k in own})
    return model


def _params_by_build(spec: NetworkSpec) -> int:
    import torch

    from scaling.nn.build import build_model

    with torch.device("meta"):
        model = build_model(spec)
    return sum(p.numel() for p in model.parameters())


def model_table(names: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per model: name, family, params, resolution, and (when :mod:`scaling.cost.complexity`
    is present) MACs at the model's resolution and at 224."""
    try:
        from scaling.cost import complexity
    except ImportError:  # pragma: no cover - complexity is part of the package
        complexity = None
    rows = []
    for name in names or list_models():
        spec = get_spec(name)
        row: dict[str, Any] = {"name": name, "family": spec.family}
        if complexity is not None:
            native = complexity(spec)
            row.update(params=native.params, resolution=spec.resolution, macs=native.macs,
                       macs_224=complexity(spec, 224).macs)
        else:
            row.update(params=_params_by_build(spec), resolution=spec.resolution)
        rows.append(row)
    return rows
