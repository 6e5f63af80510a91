"""``python3 -m dalle`` is ``python3 -m dalle.convert``."""

import sys

from .convert import main

sys.exit(main())
