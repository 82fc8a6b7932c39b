"""``python -m scaling.zoo [--json] [--family F] [names...]``: the zoo as a table."""

from __future__ import annotations

import json
import sys

from scaling.cli import Parser, command, format_table
from scaling.zoo.models import list_models, model_table

PROG = "python -m scaling.zoo"


@command(PROG, errors=(TypeError, ValueError))
def main(argv: list[str]) -> int:
    """The zoo as a table: name, family, params, resolution, MACs at it and at 224."""
    parser = Parser(PROG, description=main.__doc__)
    parser.add_argument("names", nargs="*", help="models to list (default: all)")
    parser.add_argument("--family", help="only this family (default: every family)")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args(argv)
    rows = model_table(args.names or list_models(args.family))
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
