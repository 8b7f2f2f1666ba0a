"""Mistakes an operator can fix: the command line prints them in one line and exits 2."""

from __future__ import annotations


class OperatorError(Exception):
    """A problem with what the operator asked for or configured, with how to fix it."""
