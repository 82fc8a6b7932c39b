"""``python -m scaling.analysis``: tables and figures; see :mod:`scaling.study.analysis`."""

import sys

from scaling.study.analysis import main

if __name__ == "__main__":
    sys.exit(main())
