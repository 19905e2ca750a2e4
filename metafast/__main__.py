"""``python -m metafast``: the same as the ``metafast`` command."""

import sys

from metafast.cli import main

sys.exit(main())
