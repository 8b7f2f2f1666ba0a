"""``python -m wattpay.cli``: the same as the ``wattpay`` command."""

import sys

from wattpay.cli import program

sys.exit(program())
