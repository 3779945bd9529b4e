"""``python -m unimage.eval``: see ``unimage.eval.cli``."""

import sys

from unimage.eval.cli import main

sys.exit(main())
