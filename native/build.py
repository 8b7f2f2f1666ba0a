"""Compile the billing rules to C with mypyc, into the virtualenv (``make native``).

Usage: .venv/bin/python native/build.py [--check]

The rules stay Python: the same files in ``billing/`` are the only source, and they run as
they are wherever no compiled copy matches them. The compiled modules go to
``<virtualenv>/wattpay-native`` with a manifest of the SHA-256 of every source of the
package; ``billing/__init__.py`` puts them first on the package's path only while every
source still has the hash it had at the build, so an edited rule is never shadowed by an
older build (docs/architecture.md, *Scale-out*). ``--check`` prints whether the build in
place matches the sources and exits 1 when it does not.

One build runs at a time (a lock beside the target); it compiles beside the target and
swaps the result in by renames, so a build killed at any moment leaves the previous one
whole, and the next build removes what the killed one left.

Modules left out stay interpreted: the package's ``__init__`` (it chooses the build),
``rejections`` (its lists of outputs subclass ``list``) and ``outputs`` (``ScaledRow``
replaces an attribute of ``Row`` with a property).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "billing"
TARGET = Path(sys.prefix) / "wattpay-native"
MANIFEST = "manifest.json"
LOCK = TARGET.parent / "wattpay-native.lock"
LEFTOVERS = "wattpay-native-*"  # a build's own directories beside the target, while it runs
GROUP = "wattpay_billing"
INTERPRETED = frozenset({"__init__", "rejections", "outputs"})


def compiled_sources() -> list[Path]:
    """The modules of ``billing/`` that are compiled, in name order."""
    return sorted(p for p in PACKAGE.glob("*.py") if p.stem not in INTERPRETED)


def digest(path: Path) -> str:
    """A file's SHA-256 in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest() -> dict[str, object]:
    """What a build is valid for: the interpreter's ABI and the hash of every source.

    The interpreted modules count too: compiled code was type-checked against them.
    """
    sources = sorted(p for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    return {
        "abi": sysconfig.get_config_var("SOABI"),
        "compiled": [p.stem for p in compiled_sources()],
        "sources": {p.stem: digest(p) for p in sources},
    }


def is_current() -> bool:
    """True when the build in place was compiled from these sources for this interpreter."""
    path = TARGET / MANIFEST
    return path.exists() and json.loads(path.read_text()) == manifest()


def build() -> None:
    """Compile into a fresh directory beside the target, then swap it in."""
    from mypyc.build import mypycify
    from setuptools import setup

    staging = Path(tempfile.mkdtemp(prefix="wattpay-native-new-", dir=TARGET.parent))
    work = Path(tempfile.mkdtemp(prefix="wattpay-native-work-", dir=TARGET.parent))
    cwd = Path.cwd()
    try:
        os.chdir(ROOT)  # mypyc names modules by their paths from here
        extensions = mypycify(
            [str(p.relative_to(ROOT)) for p in compiled_sources()],
            opt_level="3",
            group_name=GROUP,
            target_dir=str(work / "c"),
        )
        setup(
            name="wattpay-billing-native",
            ext_modules=extensions,
            script_args=[
                "--quiet",
                "build_ext",
                "--build-lib",
                str(staging),
                "--build-temp",
                str(work / "o"),
                "--parallel",
                str(os.cpu_count() or 1),
            ],
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)
    (staging / MANIFEST).write_text(json.dumps(manifest(), indent=1, sort_keys=True) + "\n")
    # Renames, so a process starting meanwhile finds the old build whole, none, or the new one.
    retired = Path(tempfile.mkdtemp(prefix="wattpay-native-old-", dir=TARGET.parent))
    if TARGET.exists():
        TARGET.rename(retired / "build")
    staging.rename(TARGET)
    shutil.rmtree(retired, ignore_errors=True)


def main() -> int:
    """Build unless current; ``--check`` only reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say if the build is current")
    args = parser.parse_args()
    if args.check:
        current = is_current()
        print(f"compiled billing rules in {TARGET}: {'current' if current else 'missing or stale'}")
        return 0 if current else 1
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time
        for leftover in TARGET.parent.glob(LEFTOVERS):  # of a build killed before it ended
            shutil.rmtree(leftover, ignore_errors=True)
        if is_current():
            print(f"compiled billing rules in {TARGET} are current")
            return 0
        build()
    print(f"compiled {len(compiled_sources())} billing modules into {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
