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


def _start_together(store: Path, barrier, results) -> None:  # noqa: ANN001 - multiprocessing types
    barrier.wait()
    try:
        ensure_recovery_dir(store, partitions=4)
        results.put("ok")
    except OperatorError as refused:
        results.put(str(refused))


def test_the_processes_of_a_cluster_starting_at_once_all_get_one_store(tmp_path: Path) -> None:
    """Each process checks and initialises under a lock: none sees a half-made store."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    store = tmp_path / "recovery"
    for _ in range(5):
        barrier, results = context.Barrier(4), context.Queue()
        workers = [
            context.Process(target=_start_together, args=(store, barrier, results))
            for _ in range(4)
        ]
        for worker in workers:
            worker.start()
        outcomes = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join()
        assert outcomes == ["ok"] * 4
        assert len(list(store.glob("part-*.sqlite3"))) == 4
