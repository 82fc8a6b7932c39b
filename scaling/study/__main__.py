"""``python -m scaling.study``: see :mod:`scaling.study.cli`."""

import sys

from scaling.study.cli import main

if __name__ == "__main__":
    sys.exit(main())
