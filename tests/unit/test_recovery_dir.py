"""The recovery store records its state format and refuses one of another format."""

from pathlib import Path

import pytest

from config.errors import OperatorError
from pipelines.recovery import FORMAT_FILE, STATE_FORMAT, ensure_recovery_dir


def test_a_new_store_records_its_format_and_resumes(tmp_path: Path) -> None:
    store = ensure_recovery_dir(tmp_path / "recovery", partitions=2)
    assert (store / FORMAT_FILE).read_text().strip() == STATE_FORMAT
    assert len(list(store.glob("part-*.sqlite3"))) == 2
    assert ensure_recovery_dir(store, partitions=2) == store  # the next start resumes


def test_a_store_of_an_older_release_is_refused_with_what_to_do(tmp_path: Path) -> None:
    store = ensure_recovery_dir(tmp_path / "recovery", partitions=1)
    (store / FORMAT_FILE).unlink()  # as written before the format was recorded
    with pytest.raises(OperatorError, match="remove that directory") as refused:
        ensure_recovery_dir(store)
    assert str(store) in str(refused.value) and "\n" not in str(refused.value)
