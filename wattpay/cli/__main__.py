"""``python -m wattpay.cli``: the same as the ``wattpay`` command."""

import sys

from wattpay.cli import main

sys.exit(main())
