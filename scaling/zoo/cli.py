"""``python -m scaling.zoo [--json] [--family F] [--exclude P] [names or patterns...]``: the zoo as
a table (``python -m scaling.zoo 'resnet*'``: fnmatch patterns, as timm's ``list_models``)."""

from __future__ import annotations

import json
import sys

from scaling.cli import Parser, command, format_table
from scaling.zoo.models import get_spec, list_models, model_table

PROG = "python -m scaling.zoo"


@command(PROG, errors=(TypeError, ValueError))
def main(argv: list[str]) -> int:
    """The zoo as a table: name, family, params, resolution, MACs at it and at 224."""
    parser = Parser(PROG, description=main.__doc__)
    parser.add_argument("names", nargs="*",
                        help="models or fnmatch patterns ('resnet*'; timm aliases too) to list "
                             "(default: all)")
    parser.add_argument("--family", help="only this family (default: every family)")
    parser.add_argument("--exclude", action="append", default=None,
                        help="leave out models matching this pattern (repeatable; default: none)")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args(argv)
    for name in args.names:
        if not any(c in name for c in "*?["):
            get_spec(name)  # an unknown plain name: the error with close matches
    names = list_models(args.names or None, exclude=args.exclude, family=args.family)
    if not names:
        raise ValueError(f"no model matches {args.names} (exclude={args.exclude}); see "
                         f"python -m scaling.zoo")
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
