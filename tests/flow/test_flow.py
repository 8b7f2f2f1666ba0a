"""The billing flow gives the same results as the sequential reference, with 1 and 2 workers."""

import json
from collections import Counter
from pathlib import Path

import pytest
from bytewax.testing import TestingSource

from billing.outputs import Row, TopicMessage, json_text
from billing.rules import BillingRules
from billing.sequential import run_sequential
from pipelines.billing import build_billing_flow, build_routed_flow, full_topic_names
from pipelines.replay import WRITER_SHARE, accounts_key, process_share
from pipelines.replay_files import INPUT_FILES, merged_envelopes
from pipelines.replay_source import ReplaySource
from pipelines.routing import ORDER_KEYS, order_key
from pipelines.topic_files import OUTPUT_TOPICS, TopicFileSink
from tests.flow.conftest import BatchesSink, RunFlow
from tests.hostile import corpus, input_directory
from tests.paths import CONFORMANCE
from tests.unit.test_bucket_workers import placement


def canonical(outputs) -> Counter:
    result = Counter()
    for output in outputs:
        if isinstance(output, tuple) and isinstance(output[1], Row):
            output = output[1]
        if isinstance(output, Row):
            result[("row", output.table, json_text(output.values))] += 1
        else:
            message = output[1] if isinstance(output, tuple) else output
            assert isinstance(message, TopicMessage)
            result[("msg", message.topic, message.key, json_text(message.value))] += 1
    return result


def flow_and_reference(
    run_flow: RunFlow, envelopes: list, rules: BillingRules, batch_size: int = 1, **options
) -> tuple[list, list, Counter]:
    """The flow's rows and messages, and the sequential reference's outputs as ``canonical``."""
    rows: list = []
    messages: list = []
    flow = build_billing_flow(
        rules,
        source=TestingSource(envelopes, batch_size=batch_size),
        rows=BatchesSink(rows),
        messages=BatchesSink(messages),
        **options,
    )
    run_flow(flow)
    expected = canonical(full_topic_names(o, "wattpay.") for o in run_sequential(envelopes, rules))
    return rows, messages, expected


def test_flow_matches_sequential_reference(run_flow: RunFlow) -> None:
    rules = BillingRules()
    envelopes = list(merged_envelopes(CONFORMANCE / "sample1"))
    rows, messages, expected = flow_and_reference(run_flow, envelopes, rules)
    assert canonical(rows + messages) == expected
    assert sum(1 for _, r in rows if r.table == "daily_usage") == 92


@pytest.mark.parametrize(
    ("batch_size", "by_bucket"),
    [(1, True), (7, True), (10_000, True), (7, False)],
    ids=["1-by-bucket", "7-by-bucket", "10000-by-bucket", "7-by-account"],
)
def test_any_batch_size_and_account_keying_give_the_same_rows(
    run_flow: RunFlow, batch_size: int, by_bucket: bool
) -> None:
    """A chunk of one message, of 7, or the whole input at once: the sequential reference."""
    rules = BillingRules()
    envelopes = list(merged_envelopes(CONFORMANCE / "sample1"))
    rows, messages, expected = flow_and_reference(
        run_flow, envelopes, rules, batch_size=batch_size, accounts_by_bucket=by_bucket
    )
    assert canonical(rows + messages) == expected


@pytest.mark.parametrize("batch", [1, 7, 10_000])
def test_the_replay_flow_routing_as_it_reads_gives_the_sequential_reference(
    run_flow: RunFlow, batch: int
) -> None:
    """The replay's source routes a chunk of 1, 7 or every line; the accounts run anywhere."""
    rules = BillingRules()
    directory = CONFORMANCE / "sample1"
    rows: list = []
    messages: list = []
    flow = build_routed_flow(
        rules,
        source=ReplaySource(directory, rules, order_key, progress=None, batch=batch),
        rows=BatchesSink(rows),
        messages=BatchesSink(messages),
    )
    run_flow(flow)
    envelopes = list(merged_envelopes(directory))
    expected = canonical(full_topic_names(o, "wattpay.") for o in run_sequential(envelopes, rules))
    assert canonical(rows + messages) == expected
    assert {r.table for _, r in rows} >= {"rejected", "daily_usage", "intervals", "ledger"}


def test_account_rows_follow_day_closes_without_end_of_input(run_flow: RunFlow) -> None:
    """Live mode never reaches end of input: the accounts table must still follow the ledger."""
    rules = BillingRules()
    envelopes = list(merged_envelopes(CONFORMANCE / "sample1"))
    rows: list = []
    flow = build_billing_flow(
        rules,
        source=TestingSource(envelopes),
        rows=BatchesSink(rows),
        messages=BatchesSink([]),
        close_at_eof=False,
    )
    run_flow(flow)
    latest: dict = {}
    balances: dict = {}
    for _, row in rows:
        if row.table == "accounts":
            previous = latest.get(row.values["account_id"])
            if previous is None or row.values["version"] > previous["version"]:
                latest[row.values["account_id"]] = row.values
        if row.table == "ledger":
            balances[row.values["account_id"]] = row.values["balance_after"]
    assert balances
    for account_id, balance in balances.items():
        assert latest[account_id]["balance"] == balance, account_id


def test_a_configured_prefix_names_every_topic_the_flow_writes(
    run_flow: RunFlow, tmp_path: Path
) -> None:
    """With prefix ``acme.`` topic files and rejections name ``acme.*`` topics only."""
    envelopes = list(merged_envelopes(CONFORMANCE / "sample1"))
    rows: list = []
    flow = build_billing_flow(
        BillingRules(),
        source=TestingSource(envelopes),
        rows=BatchesSink(rows),
        messages=TopicFileSink(tmp_path, "acme."),
        topic_prefix="acme.",
    )
    run_flow(flow)
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == [f"acme.{topic}.jsonl" for topic in sorted(OUTPUT_TOPICS)]
    rejected = [row.values["topic"] for _, row in rows if row.table == "rejected"]
    dlq = [json.loads(line)["topic"] for line in (tmp_path / "acme.dlq.jsonl").open()]
    assert rejected and sorted(rejected) == sorted(dlq)
    assert {topic.split(".", 1)[0] for topic in rejected} == {"acme"}
    assert "acme.readings" in rejected


def test_relay_results_reach_their_account_in_the_flow(run_flow: RunFlow, tmp_path: Path) -> None:
    """Results are routed by meter like readings: the flow agrees with the reference (S14.16)."""
    cut = "disconnect:A1:M1@2026-03-02T09:00:00+08:00"
    files = {
        "accounts.jsonl": [
            '{"type": "open", "account_id": "A1", "meter_id": "M1", "plan": "zhejiang-tiered",'
            ' "ts": "2026-03-02T00:00:00+08:00", "opening_balance": "-12.00"}'
        ],
        "readings.jsonl": [
            f'{{"meter_id": "M1", "ts": "2026-03-02T{hh}:00:00+08:00", "energy_kwh": "{kwh}"}}'
            for hh, kwh in (("00", "0.000"), ("09", "1.000"), ("10", "2.000"), ("11", "3.000"))
        ],
        "meter-command-results.jsonl": [
            f'{{"command_id": "{cut}", "meter_id": "M1", "ok": false,'
            ' "ts": "2026-03-02T09:01:00+08:00", "error": "timeout"}',
            f'{{"command_id": "{cut}", "meter_id": "M9", "ok": true,'
            ' "ts": "2026-03-02T09:02:00+08:00"}',
            f'{{"command_id": "{cut}", "meter_id": "M1", "ok": "yes",'
            ' "ts": "2026-03-02T09:03:00+08:00"}',
            f'{{"command_id": "{cut}", "meter_id": "M1", "ok": true,'
            ' "ts": "2026-03-02T10:00:00+08:00"}',
        ],
    }
    for name, lines in files.items():
        (tmp_path / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    rules = BillingRules(command_results=True)
    envelopes = list(merged_envelopes(tmp_path))
    rows, messages, expected = flow_and_reference(run_flow, envelopes, rules)
    assert canonical(rows + messages) == expected
    notes = [m.value for _, m in messages if m.topic == "notifications"]
    quiet = {"arrears", "low_balance", "disconnect_scheduled"}
    kinds = [(n["type"], n["ts"]) for n in notes if n["type"] not in quiet]
    assert kinds == [
        ("disconnected", "2026-03-02T09:00:00+08:00"),
        ("meter_anomaly", "2026-03-02T09:01:00+08:00"),
        ("consumption_while_disconnected", "2026-03-02T11:00:00+08:00"),
    ]
    assert [(r.values["topic"], r.values["reason"]) for _, r in rows if r.table == "rejected"] == [
        ("wattpay.meter-command-results", "malformed")
    ]


def test_a_resumed_replay_source_routes_on_as_if_it_had_never_stopped() -> None:
    """What it skips it routes again (owners, claimed payment ids), handing nothing on."""
    rules = BillingRules()
    source = ReplaySource(CONFORMANCE / "sample1", rules, order_key, progress=None, batch=400)

    def shown(items: list) -> list:
        return [
            (item[0], [(a, r.envelope.position, r.message, r.verdict) for a, r in item[1]])
            if isinstance(item, tuple)
            else list(item)
            for item in items
        ]

    fresh = source.build_part("input", "replay", None)
    chunks = [fresh.next_batch() for _ in range(4)]
    resumed = source.build_part("input", "replay", fresh.snapshot() - 800)
    assert shown(resumed.next_batch()) == shown(chunks[2])
    assert shown(resumed.next_batch()) == shown(chunks[3])
    assert any(not isinstance(item, tuple) for chunk in chunks for item in chunk)  # refusals too


@pytest.mark.parametrize(("processes", "workers"), [(2, 1), (2, 2), (4, 2)])
def test_a_replay_cluster_gives_the_writing_process_fewer_accounts(
    processes: int, workers: int
) -> None:
    """Its workers bill WRITER_SHARE of another worker's accounts, by Bytewax's placement."""
    key_of = accounts_key(processes, workers)
    total = processes * workers
    found = placement(list(ORDER_KEYS), total)
    accounts = [f"A{n:06d}" for n in range(40_000)]
    per_worker = Counter(found[key_of(a)] for a in accounts)
    writer_share = sum(per_worker[w] for w in range(workers)) / len(accounts)
    mine, other = WRITER_SHARE
    expected = workers * mine / (workers * mine + (total - workers) * other)
    assert abs(writer_share - expected) < 0.02, (writer_share, expected)
    assert set(per_worker) == set(range(total))  # every worker bills some
    assert len({key_of(a) for a in accounts}) == total  # one key per worker
    for process in range(processes):  # each process's own keys are on its own workers
        share = process_share(processes, workers, process)
        assert share is not None
        assert {found[key] // workers for key in share.keys} == {process}
    assert process_share(1, 2, 0) is None
    assert process_share(3, 1, 0) is None  # keys' places unknown: one process reads for all


@pytest.mark.parametrize("workers", [1, 2, 4, 8, 3])
def test_one_replay_process_keys_its_accounts_once_per_worker_evenly(workers: int) -> None:
    """Threads of one process share everything: their accounts are spread evenly, a key each."""
    key_of = accounts_key(1, workers)
    accounts = [f"A{n:06d}" for n in range(40_000)]
    if workers == 3:  # the names' places are not known: the order buckets' own keys
        assert key_of is order_key
        return
    found = placement(list(ORDER_KEYS), workers)
    keys = Counter(key_of(a) for a in accounts)
    assert len(keys) == workers
    assert sorted(found[key] for key in keys) == list(range(workers))
    for key, count in keys.items():
        assert abs(count / len(accounts) - 1 / workers) < 0.02, (key, count)
        # the worker each account's order bucket is placed on, as with a key per bucket
        mine = ORDER_KEYS[found[key] :: workers]
        assert all(order_key(a) in mine for a in accounts[:500] if key_of(a) == key)


def _handed_on(source: ReplaySource, part: str) -> tuple[dict[str, list], list]:
    """Everything a replay source's partition hands on: per key, and the refusals' outputs."""
    keyed: dict[str, list] = {}
    refused: list = []
    partition = source.build_part("input", part, None)
    while True:
        try:
            items = partition.next_batch()
        except StopIteration:
            return keyed, refused
        for item in items:
            if not isinstance(item, tuple):
                refused += item
                continue
            keyed.setdefault(item[0], []).extend(
                (
                    account,
                    routed.envelope.position,
                    routed.envelope.raw,
                    routed.envelope.payload,
                    routed.envelope.received_at,
                    routed.message,
                    routed.verdict,
                )
                for account, routed in item[1]
            )


def _moved_meters(directory: Path, processes: int, workers: int) -> Path:
    """A meter that goes from one account to another billed by another process, and back.

    M1 is A's, then nobody's (its readings refused), then B's, then C's by a meter
    replacement; A, B and C are billed by different processes where there are three.
    """
    key_of = accounts_key(processes, workers)
    shares = [process_share(processes, workers, p) for p in range(processes)]

    def place(account: str) -> int:
        return next(p for p, share in enumerate(shares) if key_of(account) in share.keys)  # type: ignore[union-attr]

    accounts = [f"A{n:03d}" for n in range(1000)]
    a = accounts[0]
    b = next(x for x in accounts if place(x) != place(a))
    others = [x for x in accounts if x != a and place(x) != place(b)]
    c = next((x for x in others if place(x) != place(a)), others[0])  # a third, where there is one
    day = "2026-03-02T"
    events = [
        {
            "type": "open",
            "account_id": a,
            "meter_id": "M1",
            "plan": "zhejiang-tou",
            "ts": f"{day}00:00:00+08:00",
            "opening_balance": "20.00",
        },
        {
            "type": "open",
            "account_id": c,
            "meter_id": "M2",
            "plan": "zhejiang-tiered",
            "ts": f"{day}00:00:00+08:00",
            "opening_balance": "20.00",
        },
        {"type": "close", "account_id": a, "ts": f"{day}06:00:00+08:00", "final_kwh": "106.000"},
        {
            "type": "open",
            "account_id": b,
            "meter_id": "M1",
            "plan": "zhejiang-tiered",
            "ts": f"{day}08:00:00+08:00",
            "opening_balance": "5.00",
        },
        {"type": "close", "account_id": b, "ts": f"{day}12:00:00+08:00", "final_kwh": "112.000"},
        {
            "type": "replace_meter",
            "account_id": c,
            "old_meter_id": "M2",
            "old_final_kwh": "214.000",
            "new_meter_id": "M1",
            "new_initial_kwh": "112.000",
            "ts": f"{day}14:00:00+08:00",
        },
    ]
    readings = []
    for quarter in range(0, 18 * 4 + 1):
        ts = f"{day}{quarter // 4:02d}:{quarter % 4 * 15:02d}:00+08:00"
        readings.append({"meter_id": "M1", "ts": ts, "energy_kwh": f"{100 + quarter / 4:.3f}"})
        readings.append({"meter_id": "M2", "ts": ts, "energy_kwh": f"{200 + quarter / 4:.3f}"})
        if quarter % 7 == 0:  # not the usual line: read by every process, billed by one
            readings.append({"meter_id": "M1", "ts": ts, "energy_kwh": "1e2", "note": "x"})
    payments = [
        {
            "type": "topup",
            "payment_id": f"P-{account}",
            "account_id": account,
            "amount": "50.00",
            "channel": "app",
            "ts": f"{day}{hour}:30:00+08:00",
        }
        for account, hour in ((a, "03"), (b, "09"), (c, "15"), (a, "10"))
    ]
    for name, lines in (("accounts", events), ("readings", readings), ("payments", payments)):
        text = "".join(json.dumps(line) + "\n" for line in lines)
        (directory / INPUT_FILES[name]).write_text(text, encoding="utf-8")
    return directory


@pytest.mark.parametrize(("processes", "workers"), [(2, 1), (2, 2), (4, 2)])
@pytest.mark.parametrize("name", ["sample1", "sample2", "hostile", "moved"])
def test_every_process_of_a_cluster_hands_on_its_own_share_of_the_input(
    name: str, processes: int, workers: int, tmp_path: Path
) -> None:
    """Every process reads the files; together they hand on what one reader would, once.

    Each hands on only its own keys, in the same order and with the same envelopes
    (received times too); the first alone hands on the refusals.
    """
    if name == "hostile":  # the hostile corpus of every topic after a valid input
        directory = input_directory(tmp_path, {t: corpus(t) for t in INPUT_FILES})
    elif name == "moved":
        directory = _moved_meters(tmp_path, processes, workers)
    else:
        directory = CONFORMANCE / name
    rules = BillingRules()
    key_of = accounts_key(processes, workers)
    whole, refusals = _handed_on(ReplaySource(directory, rules, key_of, progress=None), "replay")
    assert refusals
    combined: dict[str, list] = {}
    for process in range(processes):
        share = process_share(processes, workers, process)
        assert share is not None
        part = f"replay-{process}"
        source = ReplaySource(directory, rules, key_of, progress=None, share=(part, share))
        assert source.list_parts() == [part]
        keyed, refused = _handed_on(source, part)
        assert set(keyed) <= share.keys
        assert not set(keyed) & set(combined)
        combined.update(keyed)
        assert refused == (refusals if process == 0 else [])
    assert combined == whole
