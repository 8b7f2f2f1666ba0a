"""Where the tests' own data lives: everything a test reads is inside the repository."""

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
CONFORMANCE = DATA / "conformance"
HOSTILE = DATA / "hostile"
REPO = Path(__file__).resolve().parent.parent
