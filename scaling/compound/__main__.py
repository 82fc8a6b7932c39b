"""``python -m scaling.compound``: see :mod:`scaling.compound_cli`."""

import sys

from scaling.compound_cli import main

sys.exit(main())
