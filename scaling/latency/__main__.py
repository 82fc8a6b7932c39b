"""``python -m scaling.latency``: see :mod:`scaling.latency.cli`."""

import sys

from scaling.latency.cli import main

if __name__ == "__main__":
    sys.exit(main())
