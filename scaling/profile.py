"""``python -m scaling.profile``: the complexity report of a model; see :mod:`scaling.cost.profile`."""

import sys

from scaling.cost.profile import main

if __name__ == "__main__":
    sys.exit(main())
