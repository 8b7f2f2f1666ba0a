"""The billing rules of SPEC S14, one pure function per rule (docs/billing-rules.md).

When ``make`` has compiled them (``native/build.py``: mypyc, into the virtualenv), the
compiled modules are put first on this package's path, but only while every source here
(compiled or not) still has the SHA-256 it had at the build: an edited rule runs as it is
written, never as an older build of it. ``WATTPAY_NATIVE=0`` runs the sources alone.
``COMPILED`` says which.

The dataclasses built once or more per reading say ``init=False`` and write their own
``__init__``: compiled, the one ``dataclass`` generates still runs interpreted and costs
about six times a written one (mypyc compiles the class, not what the decorator adds).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
from pathlib import Path

NATIVE = Path(sys.prefix) / "wattpay-native"


def compiled_matches(native: Path, sources: Path) -> bool:
    """True when ``native`` holds a build for this interpreter of the files in ``sources``.

    Anything unreadable, malformed or different means no: the sources then run as they are.
    """
    try:
        built = json.loads((native / "manifest.json").read_text())
        if built["abi"] != sysconfig.get_config_var("SOABI"):
            return False
        return bool(built["sources"]) and all(
            hashlib.sha256((sources / f"{name}.py").read_bytes()).hexdigest() == sha
            for name, sha in built["sources"].items()
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


COMPILED = os.environ.get("WATTPAY_NATIVE", "1") != "0" and compiled_matches(
    NATIVE, Path(__file__).parent
)
if COMPILED:
    __path__.insert(0, str(NATIVE / "billing"))  # noqa: F821 - the package's own path
    sys.path.append(str(NATIVE))  # the modules' shared library
