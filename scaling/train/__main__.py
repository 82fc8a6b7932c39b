"""``python -m scaling.train``: see :mod:`scaling.train.cli`."""

import sys

from scaling.train.cli import main

sys.exit(main())
