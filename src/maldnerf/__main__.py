"""``python -m maldnerf``: the same command line as the ``maldnerf`` script."""

import sys

from .cli import main

sys.exit(main())
