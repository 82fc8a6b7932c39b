"""``python -m scaling.search``: see :mod:`scaling.search.cli`."""

import sys

from scaling.search.cli import main

if __name__ == "__main__":
    sys.exit(main())
