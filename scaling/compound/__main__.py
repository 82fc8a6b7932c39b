"""``python -m scaling.compound``: see :mod:`scaling.compound.cli`."""

import sys

from scaling.compound.cli import main

sys.exit(main())
