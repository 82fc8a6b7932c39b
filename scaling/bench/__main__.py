"""``python -m scaling.bench NAME``: see :func:`scaling.bench.main`."""

import sys

from scaling.bench import main

sys.exit(main())
