"""The console in a real browser: Debian's headless Chromium driven by Selenium (chromium-driver),
against the real broker, Schema Registry and KSQL server, with a real scorer running a tiny model.

One console, one scorer and one browser serve every test of the module (they run in file order:
alerts, detail, feedback, health, KSQL), so the whole module stays cheap. Screenshots of each
view go to $FRAUDSTREAM_SCREENSHOT_DIR (e.g. `docs`, where the README shows them) when set, else
to a temporary folder: a test run must not rewrite tracked files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_scorer_explanations import save_model_with_stats
from test_scorer_support import feature_matrix, make_records, produce_records, read_all

ROOT = Path(__file__).resolve().parent.parent
# a path only: made on the first screenshot, not on every collection of this module
SHOTS = Path(
    os.environ.get("FRAUDSTREAM_SCREENSHOT_DIR")
    or Path(tempfile.gettempdir()) / "fraudstream-console-screenshots"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
APPEAR_S = 2.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or not Path(CHROMEDRIVER).exists(),
        reason="needs Debian's chromium and chromium-driver (make setup installs them as root)",
    ),
]


@dataclass
class Console:
    url: str
    driver: Any
    topics: dict[str, str]
    models_dir: Path
    version: str
    bootstrap: str
    registry: str
    scorer: Any
    next_id: int = 0

    def produce(self, n: int, seed: int) -> list[dict[str, Any]]:
        records = make_records(n, seed=seed, start_id=self.next_id)
        self.next_id += n
        produce_records(self.topics["input"], records, self.registry, self.bootstrap)
        return records


def _serve(asgi: Any, app: Any, sock: socket.socket, stop: threading.Event) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.graceful_timeout = 1

    async def main() -> None:
        async def stopped() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.1)
            app.state.console.end_streams()

        await serve(asgi, config, shutdown_trigger=stopped)

    asyncio.run(main())


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1440,900",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def console(
    kafka_bootstrap: str,
    schema_registry_url: str,
    ksql_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Console]:
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from services.common.http.guard import HttpGuard
    from services.common.kafka import ensure_topic
    from services.console.config import ConsoleConfig
    from services.console.server import guarded_app
    from services.scorer.scorer import Scorer, ScorerConfig

    # Chromium starts while TensorFlow loads and the model is registered (both take seconds)
    starting = ThreadPoolExecutor(1).submit(_browser)
    unique = uuid.uuid4().hex[:8]
    topics = {
        "input": f"t_console_in_{unique}",
        "alerts": f"t_console_alerts_{unique}",
        "dlq": f"t_console_dlq_{unique}",
        "feedback": f"t_console_feedback_{unique}",
    }
    models_dir = tmp_path_factory.mktemp("console-models")
    # the explanations' tiny model, with feature_stats.json (normal ranges, drift bins)
    version = save_model_with_stats(models_dir, feature_matrix(make_records(2000, seed=21)))
    ensure_topic(topics["input"], bootstrap=kafka_bootstrap)
    scorer = Scorer(
        ScorerConfig(
            topic=topics["input"],
            alerts_topic=topics["alerts"],
            dlq_topic=topics["dlq"],
            models_topic=None,
            group=f"t-console-score-{unique}",
            model=version,
            models_dir=models_dir,
            from_beginning=True,
            batch_timeout_ms=50,
        )
    )
    scoring = threading.Thread(target=scorer.run, name="score", daemon=True)
    scoring.start()

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    config = ConsoleConfig(
        alerts_topic=topics["alerts"],
        source_topic=topics["input"],
        scoring_topic=topics["input"],
        feedback_topic=topics["feedback"],
        models_dir=models_dir,
        health_interval_s=1.0,
        drift_sample=500,
    )
    app, guard = guarded_app("127.0.0.1", port, config)
    stop = threading.Event()
    server = threading.Thread(
        target=_serve, args=(HttpGuard(app, guard), app, sock, stop), daemon=True
    )
    server.start()
    driver = starting.result(timeout=120)
    driver.implicitly_wait(0)
    try:
        yield Console(
            f"http://127.0.0.1:{port}/",
            driver,
            topics,
            models_dir,
            version,
            kafka_bootstrap,
            schema_registry_url,
            scorer,
        )
    finally:
        driver.quit()
        stop.set()
        server.join(timeout=15)
        with contextlib.suppress(OSError):  # hypercorn closed it already
            sock.close()
        scorer.stop()
        scoring.join(timeout=30)


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _open(console: Console) -> None:
    """The page, loaded once (a test run alone loads it itself)."""
    if not console.driver.current_url.startswith(console.url):
        console.driver.get(console.url)


def _screenshot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"console-{name}.png"))


SEEN_SCRIPT = """
window.__seen = {};
const body = document.getElementById('alerts-body');
new MutationObserver(() => {
  for (const tr of body.querySelectorAll('tr')) {
    const ref = tr.getAttribute('data-ref');
    if (!(ref in window.__seen)) window.__seen[ref] = Date.now();
  }
}).observe(body, {childList: true});
"""


def test_alerts_appear_live_within_2s(console: Console) -> None:
    from selenium.webdriver.common.by import By

    d = console.driver
    d.get(console.url)
    _wait(lambda: d.find_element(By.ID, "connection").text == "live", 20, "the live stream")
    d.execute_script(SEEN_SCRIPT)
    console.produce(400, seed=21)
    _wait(lambda: console.scorer.result.scored >= 400, 60, f"the scorer ({console.scorer.result})")
    alerts = read_all(console.topics["alerts"], console.bootstrap, 30)
    assert alerts, "the tiny model flags about 5 % of the records"
    time.sleep(APPEAR_S + 0.5)  # the last alerts have had their 2 s
    seen: dict[str, int] = d.execute_script("return window.__seen;")
    from services.common.avro.codec import AvroDecoder
    from services.common.avro.schemas import registry_client

    decoder = AvroDecoder(registry_client(console.registry))
    latencies = []
    for msg in alerts:
        ref = f"{msg.partition()}-{msg.offset()}"
        assert ref in seen, f"alert {ref} never appeared on the page"
        latencies.append((seen[ref] - decoder.decode(msg.value())["SCORED_AT"]) / 1000)
    assert max(latencies) <= APPEAR_S, f"slowest alert took {max(latencies):.2f} s"
    rows = d.find_elements(By.CSS_SELECTOR, "#alerts-body tr")
    scored = [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows]
    assert scored == sorted(scored, reverse=True)  # newest first


def test_filters_narrow_the_table(console: Console) -> None:
    from selenium.webdriver.common.by import By

    d = console.driver
    rows = d.find_elements(By.CSS_SELECTOR, "#alerts-body tr")
    user = rows[0].find_elements(By.TAG_NAME, "td")[2].text
    d.find_element(By.ID, "f-user").send_keys(user)
    filtered = d.find_elements(By.CSS_SELECTOR, "#alerts-body tr")
    assert filtered and all(r.find_elements(By.TAG_NAME, "td")[2].text == user for r in filtered)
    d.find_element(By.ID, "f-score").send_keys("1e9")
    assert not d.find_elements(By.CSS_SELECTOR, "#alerts-body tr")
    d.find_element(By.CSS_SELECTOR, "#filters button[type=reset]").click()
    _wait(lambda: len(d.find_elements(By.CSS_SELECTOR, "#alerts-body tr")) == len(rows), 5, "reset")


def test_detail_shows_the_top_features(console: Console) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = console.driver
    row = d.find_elements(By.CSS_SELECTOR, "#alerts-body tr")[0]
    ref = row.get_attribute("data-ref")
    row.send_keys(Keys.ENTER)  # the keyboard opens it as a click does
    _wait(lambda: d.find_element(By.ID, "detail").is_displayed(), 5, "the detail view")
    features = _wait(
        lambda: d.find_elements(By.CSS_SELECTOR, "#detail-explanation-body tr"), 5, "features"
    )
    detail = d.execute_script(
        "return fetch('/api/alerts/' + arguments[0]).then(r => r.json());", ref
    )
    expected = sorted(detail["alert"]["EXPLANATION"], key=lambda f: -f["SHARE"])[:5]
    shown = [tr.get_attribute("data-feature") for tr in features]
    assert shown == [f["FEATURE"] for f in expected]
    assert 1 <= len(shown) <= 5
    assert "score" in d.find_element(By.ID, "detail-score").text
    ranges = [tr.find_elements(By.TAG_NAME, "td")[2].text for tr in features]
    assert all("…" in r for r in ranges), ranges  # each value against its normal range
    _screenshot(d, "alerts")


def test_false_positive_writes_exactly_one_feedback_record(console: Console) -> None:
    from selenium.webdriver.common.by import By

    d = console.driver
    ref = d.find_element(By.CSS_SELECTOR, "#alerts-body tr[aria-selected=true]").get_attribute(
        "data-ref"
    )
    analyst = d.find_element(By.ID, "feedback-analyst")
    analyst.clear()
    analyst.send_keys("ana")
    d.find_element(By.ID, "feedback-note").send_keys("known customer, travelling")
    button = d.find_element(By.ID, "btn-fp")
    # a double click: the second arrives while the first request is in flight
    d.execute_script("arguments[0].click(); arguments[0].click();", button)
    _wait(lambda: "recorded" in d.find_element(By.ID, "feedback-status").text, 15, "the verdict")
    assert not button.is_enabled()
    from services.common.feedback import read_feedback

    alert_id = int(
        ref
        and d.execute_script(
            "return fetch('/api/alerts/' + arguments[0]).then(r => r.json());", ref
        )["alert"]["ID"]
    )
    messages = read_all(console.topics["feedback"], console.bootstrap, 30)
    assert len(messages) == 1
    verdicts = read_feedback(console.topics["feedback"], console.bootstrap, console.registry)
    assert set(verdicts) == {alert_id}
    fb = verdicts[alert_id]
    assert fb.verdict == "FALSE_POSITIVE" and fb.analyst == "ana"
    assert fb.note == "known customer, travelling" and fb.model_version == console.version


RATES_SCRIPT = """
const out = {};
for (const tr of document.querySelectorAll('#health-body tr')) {
  const rate = tr.querySelectorAll('td')[3].getAttribute('data-rate');
  const stage = tr.getAttribute('data-stage');
  if (rate) out[stage] = Math.max(out[stage] || 0, Number(rate));
}
return out;
"""


def test_health_shows_throughput_while_the_pipeline_runs(console: Console) -> None:
    from selenium.webdriver.common.by import By

    d = console.driver
    _open(console)
    d.find_element(By.ID, "tab-health").click()
    stop = threading.Event()

    def keep_producing() -> None:
        seed = 100
        while not stop.is_set():
            console.produce(50, seed=seed)
            seed += 1
            stop.wait(0.3)

    producer = threading.Thread(target=keep_producing, daemon=True)
    producer.start()
    try:

        def rates() -> dict[str, float] | None:
            # one script reads the whole table: it is redrawn every 2 s
            out: dict[str, float] = d.execute_script(RATES_SCRIPT)
            busy = out.get("producer", 0) > 0 and out.get("scorer", 0) > 0
            return out if busy else None

        seen = _wait(rates, 30, "non-zero producer and scorer throughput")
        assert seen["producer"] > 0 and seen["scorer"] > 0
        drift = "return document.querySelectorAll('#drift-body tr').length;"
        assert _wait(lambda: d.execute_script(drift), 20, "the drift table") == 30
        _screenshot(d, "health")
    finally:
        stop.set()
        producer.join(timeout=10)


def test_models_view_shows_roles_and_refuses_a_budget_it_cannot_set(console: Console) -> None:
    from selenium.webdriver.common.by import By

    d = console.driver
    _open(console)
    d.find_element(By.ID, "tab-models").click()
    row = _wait(
        lambda: d.find_elements(
            By.CSS_SELECTOR, f'#models-body tr[data-version="{console.version}"]'
        ),
        10,
        "the model row",
    )[0]
    assert row.find_elements(By.TAG_NAME, "td")[2].text == "LATEST, scoring"
    # the tiny model was registered without validation scores: the budget is refused, clearly
    d.find_element(By.ID, "budget-value").send_keys("15")
    d.find_element(By.ID, "budget-apply").click()
    status = _wait(
        lambda: (
            d.find_element(By.ID, "budget-status").text.startswith("Not applied")
            and d.find_element(By.ID, "budget-status").text
        ),
        15,
        "the budget answer",
    )
    assert "validation scores" in status


def test_ksql_editor_creates_a_stream(console: Console, ksql_url: str, unique: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from services.ksql_server.rest.client import KsqlClient

    d = console.driver
    _open(console)
    d.find_element(By.ID, "tab-ksql").click()
    name = f"T_CONSOLE_{unique.upper()}"
    editor = d.find_element(By.ID, "ksql-sql")
    editor.clear()
    editor.send_keys(
        f"CREATE STREAM {name} (ID BIGINT, NOTE VARCHAR) WITH (KAFKA_TOPIC='{name.lower()}', "
        "VALUE_FORMAT='JSON', PARTITIONS=1);"
    )
    editor.send_keys(Keys.CONTROL, Keys.ENTER)
    _wait(lambda: "run" in d.find_element(By.ID, "ksql-status").text, 30, "the statement")
    client = KsqlClient(ksql_url)
    try:
        listed = client.ksql("SHOW STREAMS;")[0]["streams"]
        assert name in {s["name"] for s in listed}
        catalog = "return document.getElementById('ksql-streams').textContent;"
        _wait(lambda: name in d.execute_script(catalog), 10, "the catalog")
        editor.clear()
        editor.send_keys("SHOW STREAMS;")
        d.find_element(By.ID, "ksql-run").click()
        cells = "return document.querySelectorAll('#ksql-results table td').length;"
        _wait(lambda: d.execute_script(cells), 20, "the rows")
        _screenshot(d, "ksql")
    finally:
        client.ksql(f"DROP STREAM IF EXISTS {name} DELETE TOPIC;")
