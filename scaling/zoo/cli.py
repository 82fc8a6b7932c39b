"""``python -m scaling.zoo [--json] [--family F] [--exclude P] [names or patterns...]``: the zoo as
a table (``python -m scaling.zoo 'resnet*'``: fnmatch patterns, as timm's ``list_models``; a
family name lists the family; names, aliases and tagged names are listed as given)."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys

from scaling.cli import Parser, command, format_table
from scaling.zoo.models import get_spec, list_models, model_table

PROG = "python -m scaling.zoo"


def _matches(arg: str, args: argparse.Namespace, families: list[str]) -> list[str]:
    """The models one positional argument names, in zoo order: a pattern's matches (aliases
    too), a bare family name's models, or the name itself (a zoo name, alias or tagged name)."""
    if any(c in arg for c in "*?["):
        return list_models(arg, exclude=args.exclude, family=args.family)
    if arg in families and arg not in list_models():
        if args.family not in (None, arg):
            return []
        return list_models(exclude=args.exclude, family=arg)
    spec = get_spec(arg)  # an unknown name: the error with close matches
    excluded = any(fnmatch.fnmatchcase(arg, p) for p in args.exclude or ())
    return [] if excluded or args.family not in (None, spec.family) else [arg]


@command(PROG, errors=(TypeError, ValueError))
def main(argv: list[str]) -> int:
    """The zoo as a table: name, family, params, resolution, MACs at it and at 224."""
    parser = Parser(PROG, description=main.__doc__)
    parser.add_argument("names", nargs="*",
                        help="models or fnmatch patterns ('resnet*'; timm aliases too) to list "
                             "(default: all)")
    families = sorted({get_spec(n).family for n in list_models()})
    parser.add_argument("--family", choices=families, metavar="FAMILY",
                        help=f"only this family: {', '.join(families)} (default: every family)")
    parser.add_argument("--exclude", action="append", default=None,
                        help="leave out models matching this pattern (repeatable; default: none)")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args(argv)
    names = [] if args.names else list_models(exclude=args.exclude, family=args.family)
    for arg in args.names:
        names += [n for n in _matches(arg, args, families) if n not in names]
    if not names:
        raise ValueError(f"no model matches {args.names} (family={args.family}, "
                         f"exclude={args.exclude}); see python -m scaling.zoo")
    rows = model_table(names)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = list(rows[0])
    heads = {"params": "params", "macs": "MACs", "macs_224": "MACs@224"}
    print(format_table([heads.get(c, c) for c in cols],
                       ([str(r[c]) if c == "resolution" else r[c] for c in cols] for r in rows),
                       left=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
