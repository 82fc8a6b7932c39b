"""``python -m scaling.zoo``: see :mod:`scaling.zoo.cli`."""

import sys

from scaling.zoo.cli import main

sys.exit(main())
