"""``python -m marketplace`` is the ``hashmarket`` command."""

import sys

from marketplace.cli import main

sys.exit(main())
