"""The operations dashboard: every PromQL expression parses, every metric it names exists."""

import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from bus.ports import free_port
from meters.poller import PollStats
from notify.metrics import create_notify_metrics
from pipelines.metrics import PollStatsCollector, create_metrics
from tests.live_harness import wait_until
from tests.paths import REPO
from tests.tools import require_tool

DASHBOARD = REPO / "dashboards" / "wattpay-operations.json"


def expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def known_metrics() -> set[str]:
    names = set()
    metrics = create_metrics()
    metrics.clickhouse_insert_seconds.observe(0.1)
    metrics.clickhouse_batch_rows.observe(1)
    notify = create_notify_metrics()
    notify.latency.labels("sms").observe(0.1)
    for family in (
        list(metrics.registry.collect())
        + list(PollStatsCollector(PollStats()).collect())
        + list(notify.registry.collect())
    ):
        names.update(sample.name for sample in family.samples)
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_every_metric_on_the_dashboard_exists() -> None:
    known = known_metrics()
    used = {name for expr in expressions() for name in re.findall(r"\bwattpay_[a-z_]+", expr)}
    assert used and used <= known, used - known


def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    binary = require_tool("prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    port = free_port()
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2):
                    return True
            except OSError:
                return False

        wait_until(ready, 60, "Prometheus to start")
        for expr in expressions():
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert json.loads(response.read())["status"] == "success", expr
            except urllib.error.HTTPError as err:
                raise AssertionError(f"{expr}: {err.read().decode()}") from err
    finally:
        server.terminate()
        server.wait(30)
