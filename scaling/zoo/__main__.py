"""``python -m scaling.zoo``: see :func:`scaling.zoo.models.main`."""

import sys

from scaling.zoo.models import main

sys.exit(main())
