"""``python -m scaling.profile``: a model's complexity report; see :mod:`scaling.cost.profile`."""

import sys

from scaling.cost.profile import main

if __name__ == "__main__":
    sys.exit(main())
