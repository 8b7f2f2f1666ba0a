"""The compiled billing rules (native/build.py): used only while current, and the same results.

The suite runs the rules compiled when `make` has built them; these tests hold the
interpreted sources to the same outputs and snapshots, and check that an edited source is
never shadowed by an older build.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import io
import json
import os
import pickle
import pkgutil
import shutil
import subprocess
import sys
import sysconfig
from datetime import datetime
from pathlib import Path

import pytest

import billing
from billing.apportion import Part
from billing.clock import LOCAL_ZONE
from billing.decoding import FloatLiteral
from billing.directory import MeterDirectory
from billing.engine import Outcome, route
from billing.messages import CommandResult
from billing.rating import RatedSlice
from billing.readings import Accepted
from billing.rejections import Rejection
from billing.rules import BillingRules
from pipelines.replay_files import merged_envelopes
from tests.paths import CONFORMANCE, REPO

BUILT = (billing.NATIVE / "manifest.json").exists()

RUN = """
import json, pickle, sys
from dataclasses import fields
from pathlib import Path
import billing
from billing.rules import BillingRules
from billing.sequential import run_sequential
from billing.state import AccountState
from billing.engine import route, apply
from billing.directory import MeterDirectory
from billing.rejections import Rejected, Ignored
from pipelines.replay_files import merged_envelopes

def plain(output):
    values = getattr(output, "values", None)
    if values is None:
        return ["message", output.topic, output.key, output.value]
    return ["row", output.table, values]

result = {"compiled": billing.COMPILED, "sets": {}}
for name in sys.argv[2:]:
    envelopes = list(merged_envelopes(Path(sys.argv[1]) / name))
    outputs = [plain(o) for o in run_sequential(envelopes, BillingRules())]
    directory, states, rules = MeterDirectory(), {}, BillingRules()
    for envelope in envelopes:
        routed = route(envelope, directory, rules)
        if not isinstance(routed, Rejected | Ignored):
            outcome = apply(states.get(routed[0]), routed[1], rules)
            states[routed[0]] = outcome.state
    states = {k: v for k, v in states.items() if v is not None}
    theirs = Path(sys.argv[1]).parent / f"{name}.other.pickle"
    loaded = pickle.loads(theirs.read_bytes()) if theirs.exists() else None
    Path(sys.argv[1]).parent.joinpath(f"{name}.{int(billing.COMPILED)}.pickle").write_bytes(
        pickle.dumps(states, protocol=pickle.HIGHEST_PROTOCOL)
    )
    def fields_of(state):  # a set's order is the process's hashing, not the state
        # (a field left out of comparisons is a cache, such as the balance in units)
        values = (getattr(state, f.name) for f in fields(AccountState) if f.compare)
        return [repr(sorted(v)) if isinstance(v, frozenset) else repr(v) for v in values]
    result["sets"][name] = {
        "outputs": json.dumps(outputs, default=str, sort_keys=True),
        "states": {k: fields_of(v) for k, v in sorted(states.items())},
        "loaded": None if loaded is None else {k: fields_of(v) for k, v in sorted(loaded.items())},
    }
print(json.dumps(result))
"""


def _run(workdir: Path, *, native: bool) -> dict:
    """Both conformance sets through the rules in a fresh process, compiled or not."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "WATTPAY_NATIVE": "1" if native else "0"}
    command = [sys.executable, "-c", RUN, str(workdir / "sets"), "sample1", "sample2"]
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _require_build() -> None:
    if not BUILT:
        if os.environ.get("CI"):
            pytest.fail("no compiled billing rules: `make test` builds them (native/build.py)")
        pytest.skip("no compiled billing rules here: run `make native`")


def test_the_suite_runs_the_compiled_rules_when_they_are_built() -> None:
    _require_build()
    import billing.rating

    assert billing.COMPILED
    assert billing.rating.__file__.startswith(str(billing.NATIVE))
    assert billing.rating.__file__.endswith(".so")


def test_compiled_and_interpreted_rules_give_the_same_outputs_and_read_each_others_snapshots(
    tmp_path: Path,
) -> None:
    _require_build()
    shutil.copytree(CONFORMANCE, tmp_path / "sets")
    compiled = _run(tmp_path, native=True)
    for name in ("sample1", "sample2"):  # the interpreted run loads the compiled snapshots
        (tmp_path / f"{name}.1.pickle").rename(tmp_path / f"{name}.other.pickle")
    interpreted = _run(tmp_path, native=False)
    assert compiled["compiled"] is True and interpreted["compiled"] is False
    for name in ("sample1", "sample2"):
        ours, theirs = compiled["sets"][name], interpreted["sets"][name]
        assert len(ours["outputs"]) > 10_000  # every row and message of the set, as text
        assert ours["outputs"] == theirs["outputs"]
        assert ours["states"] == theirs["states"]
        assert theirs["loaded"] == ours["states"]  # a compiled snapshot, loaded interpreted
        (tmp_path / f"{name}.0.pickle").rename(tmp_path / f"{name}.other.pickle")
    again = _run(tmp_path, native=True)  # and an interpreted snapshot, loaded compiled
    for name in ("sample1", "sample2"):
        assert again["sets"][name]["loaded"] == interpreted["sets"][name]["states"]


@pytest.mark.parametrize("edited", ["rating.py", "outputs.py"])  # compiled, and not
def test_an_edited_source_runs_as_written_and_not_as_the_older_build(
    tmp_path: Path, edited: str
) -> None:
    _require_build()
    tree = tmp_path / "tree"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "billing", tree / "billing", ignore=skip)
    probe = "import billing, billing.rating; print(billing.COMPILED, billing.rating.__file__)"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("WATTPAY_NATIVE", None)

    def which() -> str:
        command = [sys.executable, "-c", probe]
        done = subprocess.run(
            command, cwd=tree, env=env, capture_output=True, text=True, check=True, timeout=60
        )
        return done.stdout.strip()

    assert which().startswith("True ")  # an unchanged copy of the sources: the build
    source = tree / "billing" / edited
    source.write_text(source.read_text() + "\n# edited\n")
    assert which() == f"False {tree / 'billing' / 'rating.py'}"


def _constructed_classes() -> set[type]:
    """Every dataclass of billing/ that pickles through its constructor.

    The frozen ones, and those with a written ``__init__`` (``init=False``).
    """
    found: set[type] = set()
    for module_info in pkgutil.iter_modules(billing.__path__):
        module = importlib.import_module(f"billing.{module_info.name}")
        for value in vars(module).values():
            params = getattr(value, "__dataclass_params__", None)
            if inspect.isclass(value) and value.__module__ == module.__name__ and params:
                if params.frozen or not params.init:
                    found.add(value)
    return found


def _instances(value: object, into: list[object]) -> list[object]:
    """``value`` and every dataclass instance inside it (fields, tuples, dicts)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        into.append(value)
        for field in dataclasses.fields(value):
            _instances(getattr(value, field.name), into)
    elif isinstance(value, tuple | list):
        for item in value:
            _instances(item, into)
    elif isinstance(value, dict):
        for item in value.values():
            _instances(item, into)
    return into


def test_every_dataclass_built_by_its_constructor_pickles_and_comes_back_equal() -> None:
    """Compiled, a frozen dataclass cannot be unpickled field by field (it refuses setattr),
    nor one with a written ``__init__`` be made without its arguments."""
    rules = BillingRules()
    start = datetime(2026, 6, 1, 8, tzinfo=LOCAL_ZONE)
    end = datetime(2026, 6, 1, 8, 15, tzinfo=LOCAL_ZONE)
    samples: list[object] = [
        rules,
        FloatLiteral("1e3"),
        Rejection("malformed", "not JSON"),
        CommandResult("C1", "M1", False, start, "no answer"),
        Part(start, end, 250),
        RatedSlice(start, end, 250, "peak", 1, 5_680, 1_420_000),
        Accepted(1_000, start, 250),
        Outcome(None, [], Rejection("unknown_meter", "no open account owns M9")),
    ]
    directory = MeterDirectory()
    for envelope in merged_envelopes(CONFORMANCE / "sample2"):
        samples.append(envelope)
        routed = route(envelope, directory, rules)
        if type(routed) is tuple:
            samples.append(routed[1])  # the Routed, its Envelope and its message
    found: list[object] = []
    for sample in samples:
        _instances(sample, found)
    assert {type(value) for value in found} >= _constructed_classes()
    for value in found:
        assert pickle.loads(_own_pickle(value)) == value  # noqa: S301


def _own_pickle(value: object) -> bytes:
    """``value`` pickled by its class's own ``__reduce__``, not by a ``copyreg`` packer.

    ``pipelines.wire`` registers packers that leave behind what an account does not need.
    """
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {}
    pickler.dump(value)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "manifest",
    [
        b"",
        b"not json",
        b"[]",
        b'{"abi": "cpython-27mu", "sources": {"rating": "00"}}',
        b'{"abi": null, "sources": {}}',
        b'{"sources": {"rating": "00"}}',
        b'{"abi": "ABI", "sources": ["rating"]}',
        b'{"abi": "ABI", "sources": {"rating": 7}}',
        b'{"abi": "ABI", "sources": {"../../etc/passwd": "00"}}',
        b'{"abi": "ABI", "sources": {}}',
        b"\xff\xfe",
    ],
)
def test_a_damaged_or_foreign_manifest_means_the_sources_run(
    tmp_path: Path, manifest: bytes
) -> None:
    (tmp_path / "rating.py").write_text("RATE = 1\n")
    abi = json.dumps(sysconfig.get_config_var("SOABI"))
    (tmp_path / "manifest.json").write_bytes(manifest.replace(b'"ABI"', abi.encode()))
    assert billing.compiled_matches(tmp_path, tmp_path) is False


def test_a_manifest_of_these_very_sources_means_the_build(tmp_path: Path) -> None:
    source = tmp_path / "rating.py"
    source.write_text("RATE = 1\n")
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    manifest = {"abi": sysconfig.get_config_var("SOABI"), "sources": {"rating": sha}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert billing.compiled_matches(tmp_path, tmp_path) is True
    source.write_text("RATE = 2\n")
    assert billing.compiled_matches(tmp_path, tmp_path) is False
