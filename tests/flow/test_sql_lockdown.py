"""The analysts' query path against the real embedded ClickHouse: what runs, what is refused.

Every escape is tried three ways: the store's `query_readonly`, ``wattpay sql`` with a chdb DSN
(in this process, sharing the engine), and the HTTP query endpoint of ``wattpay up``.
"""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest

from config.errors import OperatorError
from store.clickhouse import ClickHouseError, ClickHouseStore, QueryLimits, QueryStopped
from store.sqlguard import RefusedQuery
from wattpay.cli import main
from wattpay.query_server import serve_queries

MARKER = "wattpay-lockdown-marker"
ESCAPES = [
    "SELECT file('/etc/shadow')",
    "SELECT file('/proc/self/environ')",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:9/bucket/key', 'LineAsString')",
    "SELECT * FROM remote('127.0.0.1:9', system.one)",
    "SELECT * FROM executable('id', 'TSV', 'x String')",
    "SELECT * FROM input('x String')",
    "SELECT * FROM merge('system', '.*')",
    "SELECT * FROM mysql('127.0.0.1:9', 'db', 't', 'u', 'p')",
    "SELECT count() FROM numbers(1e12)",
    "SELECT dictGet('system.x', 'y', toUInt64(1))",
    "SELECT joinGet('readings', 'meter_id', 1)",
    "SELECT sleep(3)",
    "SELECT hostName()",
    "SELECT * FROM system.users",
    "SELECT * FROM system.processes",
    "SELECT name, value FROM system.settings",
    "SELECT 'default' IN system.users",
    "SELECT * FROM readings WHERE meter_id IN (SELECT name FROM system.users)",
    "WITH (SELECT name FROM system.users LIMIT 1) AS u SELECT u",
    "SELECT * APPLY(file) FROM readings",
    "SELECT 1; SELECT file('/etc/passwd')",
    "SELECT 1 /* ; */ ; DROP TABLE readings",
    "/* SELECT */ DROP TABLE readings",
    "SELECT 1 -- x\n; DROP TABLE readings",
    "ＳＥＬＥＣＴ 1",  # fullwidth letters  # noqa: RUF001
    "SELECT fіle('/etc/passwd')",  # Cyrillic і  # noqa: RUF001
    "SELECT `x\n    Function file` FROM readings",
    "SELECT 1 AS `a (children 1)`",
    "SELECT 1 INTO OUTFILE 'lockdown-out.csv'",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT count() FROM readings SETTINGS max_execution_time = 0",
    "SELECT 1 FORMAT JSON",
    "SET readonly = 0",
    "INSERT INTO readings SELECT * FROM readings",
    "DROP TABLE readings",
    "ALTER TABLE readings DELETE WHERE 1",
    "OPTIMIZE TABLE readings FINAL",
    "SHOW USERS",
    "SHOW GRANTS",
    "SHOW CREATE USER default",
    "SHOW PROCESSLIST",
    "SHOW CLUSTERS",
    "SHOW SETTINGS LIKE '%'",
    "SHOW MERGES",
    "SHOW CREATE TABLE system.users",
    "DESCRIBE file('/etc/passwd')",
    "DESCRIBE TABLE system.users",
    "EXPLAIN SELECT 1",
    "SELECT {p:String}",
    "",
]
READS = [
    ("SELECT count() FROM readings", ["count()"], [(0,)]),
    ("SELECT getSetting('readonly') AS ro;", ["ro"], [(1,)]),
    ("WITH x AS (SELECT account_id FROM accounts FINAL) SELECT count() FROM x", None, [(0,)]),
    ('SELECT 1 AS "Total kWh"', ["Total kWh"], [(1,)]),
]


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated chdb directory, held open for the module (one directory per process)."""
    dsn = f"chdb://{tmp_path_factory.mktemp('lockdown') / 'ch'}"
    holder = ClickHouseStore(dsn)
    holder.migrate()
    try:
        yield dsn
    finally:
        holder.close()


@pytest.fixture
def store(dsn: str) -> Iterator[ClickHouseStore]:
    with ClickHouseStore(dsn) as shared:
        yield shared


@pytest.fixture(scope="module")
def endpoint(dsn: str) -> Iterator[str]:
    store = ClickHouseStore(dsn)
    server = serve_queries(store, "127.0.0.1", 0, limits=QueryLimits(max_seconds=1))
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        store.close()


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8")


def query_url(endpoint: str, sql: str, fmt: str = "json") -> str:
    return f"{endpoint}/query?" + urlencode({"sql": sql, "format": fmt})


def tables_intact(store: ClickHouseStore) -> None:
    _, rows = store.query(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'readings'"
    )
    assert rows == [(1,)]


@pytest.mark.parametrize("sql", ESCAPES)
def test_the_store_refuses_each_escape(store: ClickHouseStore, sql: str, tmp_path: Path) -> None:
    with pytest.raises((RefusedQuery, ClickHouseError)):
        store.query_readonly(sql)
    tables_intact(store)


@pytest.mark.parametrize("sql", ESCAPES)
def test_wattpay_sql_refuses_each_escape(
    dsn: str,
    sql: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sql", "--clickhouse", dsn, sql]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("wattpay sql: ") and err.count("\n") == 1
    assert "root:" not in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no OUTFILE, no state directory


@pytest.mark.parametrize("sql", ESCAPES)
def test_the_query_endpoint_refuses_each_escape(endpoint: str, sql: str) -> None:
    status, body = http_get(query_url(endpoint, sql))
    assert status == 400
    assert json.loads(body)["error"]
    assert "root:" not in body


@pytest.mark.parametrize(("sql", "columns", "rows"), READS)
def test_reads_run_everywhere(
    store: ClickHouseStore, endpoint: str, sql: str, columns: list[str] | None, rows: list
) -> None:
    got_columns, got_rows = store.query_readonly(sql)
    assert got_rows == rows
    if columns is not None:
        assert got_columns == columns
    status, body = http_get(query_url(endpoint, sql, "csv"))
    assert status == 200, body


def test_reads_of_the_schema_and_of_system_tables_and_columns(store: ClickHouseStore) -> None:
    assert ("ledger",) in store.query_readonly("SHOW TABLES")[1]
    assert ("system",) in store.query_readonly("SHOW DATABASES")[1]
    assert store.query_readonly("DESCRIBE TABLE events")[1][0][:2] == ("event_id", "String")
    assert "CREATE TABLE" in store.query_readonly("SHOW CREATE TABLE ledger")[1][0][0]
    _, tables = store.query_readonly(
        "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name"
    )
    assert ("readings",) in tables
    _, columns = store.query_readonly(
        "SELECT name FROM system.columns WHERE table = 'ledger' AND name = 'amount'"
    )
    assert columns == [("amount",)]
    _, rows = store.query_readonly(
        "SELECT r.meter_id, sumIf(i.kwh, i.period = 'peak'), quantile(0.9)(i.kwh), "
        "row_number() OVER (ORDER BY r.meter_id) FROM readings AS r "
        "JOIN intervals AS i ON r.meter_id = i.meter_id GROUP BY r.meter_id"
    )
    assert rows == []


def test_a_long_query_is_stopped(store: ClickHouseStore, endpoint: str) -> None:
    heavy = (
        "SELECT count() FROM system.columns AS a, system.columns AS b, "
        "system.columns AS c, system.columns AS d"
    )
    with pytest.raises(QueryStopped, match="longer than 1s"):
        store.query_readonly(heavy, QueryLimits(max_seconds=1))
    status, body = http_get(query_url(endpoint, heavy))
    assert status == 400 and "longer than 1s" in body
    # The shared client is free again at once.
    assert store.query_readonly("SELECT 1")[1] == [(1,)]


def test_a_huge_result_is_refused(store: ClickHouseStore) -> None:
    with pytest.raises(QueryStopped, match="more than 1000 rows"):
        store.query_readonly("SELECT arrayJoin(range(1000000))", QueryLimits(max_result_rows=1000))
    assert len(store.query_readonly("SELECT arrayJoin(range(1000))", QueryLimits(1, 1000))[1]) == (
        1000
    )


def test_wattpay_sql_applies_the_configured_limits(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "w.toml"
    config.write_text("[query]\nmax_seconds = 1\nmax_result_rows = 10\n")
    assert (
        main(["--config", str(config), "sql", "--clickhouse", dsn, "SELECT arrayJoin(range(100))"])
        == 2
    )
    assert "more than 10 rows" in capsys.readouterr().err
    assert (
        main(
            [
                "--config",
                str(config),
                "sql",
                "--clickhouse",
                dsn,
                "SELECT count() FROM system.columns a, system.columns b, system.columns c",
            ]
        )
        == 2
    )
    assert "longer than 1s" in capsys.readouterr().err


def test_the_endpoint_answers_only_to_its_own_host_names(endpoint: str) -> None:
    port = endpoint.rsplit(":", 1)[1]
    url = query_url(endpoint, "SELECT 1")
    assert http_get(url, {"Host": f"localhost:{port}"})[0] == 200
    assert http_get(url, {"Host": f"127.0.0.1:{port}"})[0] == 200
    for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}"):
        assert http_get(url, {"Host": host})[0] == 403


def test_the_endpoint_checks_a_configured_token(dsn: str) -> None:
    store = ClickHouseStore(dsn)
    server = serve_queries(store, "127.0.0.1", 0, token="s3cret-token")
    url = query_url(f"http://127.0.0.1:{server.server_address[1]}", "SELECT 1")
    try:
        assert http_get(url)[0] == 401
        assert http_get(url, {"Authorization": "Bearer wrong"})[0] == 401
        assert http_get(url, {"Authorization": "s3cret-token"})[0] == 401
        assert http_get(url, {"Authorization": "Bearer s3cret-token"})[0] == 200
    finally:
        server.shutdown()
        store.close()


def test_the_endpoint_will_not_listen_beyond_loopback_without_a_token(dsn: str) -> None:
    store = ClickHouseStore(dsn)
    try:
        for host in ("0.0.0.0", "192.0.2.10"):  # noqa: S104 - refused before anything binds
            with pytest.raises(OperatorError, match="without a token"):
                serve_queries(store, host, 0)
    finally:
        store.close()


def test_wattpay_sql_reads_a_running_instance_with_its_token(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ClickHouseStore(dsn)
    server: ThreadingHTTPServer = serve_queries(store, "127.0.0.1", 0, token="tok-123")
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.chdir(tmp_path)
    try:
        monkeypatch.setenv("WATTPAY_QUERY_TOKEN", "tok-123")
        assert main(["sql", "--endpoint", endpoint, "SELECT 41 + 1 AS n", "--format", "csv"]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "42"
        assert main(["sql", "--endpoint", endpoint, "SELECT file('/etc/shadow')"]) == 2
        assert capsys.readouterr().err == "wattpay sql: function file() is not allowed here\n"
        monkeypatch.setenv("WATTPAY_QUERY_TOKEN", "wrong")
        assert main(["sql", "--endpoint", endpoint, "SELECT 1"]) == 2
    finally:
        server.shutdown()
        store.close()
