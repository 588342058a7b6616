"""The console's routes and bounds without a broker: what a page or a hostile client may send,
what the page is allowed to do with what it gets, and how an alert's explanation is shown.

(tests/test_console_browser.py runs the console against the real stack in a real browser.)
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from services.common.http.guard import HttpGuard
from services.common.settings import HttpServerSettings
from services.console.alerts import MAX_TEXT, clean_alert
from services.console.app import STATIC, build_app, explanation
from services.console.backend import FeedbackDesk
from services.console.config import ConsoleConfig
from services.console.ksql_proxy import MAX_STATEMENTS, EditorError, KsqlProxy
from services.console.models import plot_bytes

ALERT = {
    "ID": 42,
    "USER": "user7",
    "TIMESTAMP": "2026-12-03 10:00:00",
    "AMOUNT": 129.5,
    "SCORE": 4.2,
    "THRESHOLD": 3.0,
    "MODEL_VERSION": "20261203-100000-abcdef",
    "SCORED_AT": 1_796_000_000_000,
    "CLASS": "1",
    "EXPLANATION": None,
}


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return build_app(ConsoleConfig(models_dir=tmp_path, start_readers=False))


@pytest.fixture
def client(app: Any) -> Any:
    with TestClient(app) as c:
        yield c


def _add(app: Any, alert: dict[str, Any], offset: int = 0) -> str:
    cleaned = clean_alert(alert, 0, offset)
    app.state.console.feed._add([cleaned])
    return str(cleaned["REF"])


def test_page_and_assets_carry_a_strict_content_security_policy(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<table" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset in ("console.js", "console.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


def test_page_never_turns_data_into_markup_and_needs_no_network() -> None:
    script = (STATIC / "console.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    page = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "inline script"
    for text in (page, script, (STATIC / "console.css").read_text()):
        assert not re.search(r"https?://", text), "an external resource (no CDN)"
    # every form control has a label, every tab its panel
    controls = re.findall(r"<(?:input|select|textarea)\b[^>]*>", page)
    for control in controls:
        ident = re.search(r'id="([^"]+)"', control)
        assert ident, control
        labelled = f'for="{ident.group(1)}"' in page or re.search(
            rf"<label[^>]*>[^<]*(?:<[^>]+>[^<]*)*?{re.escape(control)}", page
        )
        assert labelled, f"{ident.group(1)} has no label"
    for tab in re.findall(r'role="tab" id="([^"]+)" aria-controls="([^"]+)"', page):
        assert f'id="{tab[1]}" role="tabpanel" aria-labelledby="{tab[0]}"' in page


def test_alert_values_are_bounded_and_json_safe() -> None:
    alert = clean_alert(
        {
            **ALERT,
            "USER": "x" * 5000,
            "SCORE": math.nan,
            "EXPLANATION": [{"FEATURE": "V1", "SHARE": 0.5}] * 50,
            "DEEP": [[[[["too deep"]]]]],
        },
        2,
        17,
    )
    assert alert["REF"] == "2-17"
    assert len(alert["USER"]) == MAX_TEXT
    assert alert["SCORE"] is None
    assert len(alert["EXPLANATION"]) == 10
    json.dumps(alert, allow_nan=False)


def _item(feature: str, share: float, value: float, low: Any = None, high: Any = None) -> dict:
    return {"FEATURE": feature, "SHARE": share, "VALUE": value, "NORMAL_LOW": low,
            "NORMAL_HIGH": high}  # fmt: skip


def test_explanation_top_five_by_share_with_normal_ranges() -> None:
    items = [_item(f"V{i}", share=i / 100, value=float(i), low=0.0, high=3.0) for i in range(1, 8)]
    items.append(_item("AMOUNT", 0.5, 900.0))  # no range in the record: from feature_stats
    rows = explanation({"EXPLANATION": items}, {"AMOUNT": (1.0, 500.0)})
    assert [r["feature"] for r in rows] == ["AMOUNT", "V7", "V6", "V5", "V4"]
    assert rows[0]["low"] == 1.0 and rows[0]["high"] == 500.0 and rows[0]["outside"] is True
    assert rows[-1]["outside"] is True and rows[-1]["value"] == 4.0
    inside = explanation({"EXPLANATION": [_item("V1", 1.0, 2.0, 0.0, 3.0)]}, {})
    assert inside[0]["outside"] is False
    unknown = explanation({"EXPLANATION": [_item("V9", 1.0, 2.0)]}, {})
    assert unknown[0]["low"] is None and unknown[0]["outside"] is None
    assert explanation({"EXPLANATION": None}, {}) == []
    assert explanation({"EXPLANATION": [{"FEATURE": 3}, "junk"]}, {}) == []


def test_alert_detail_and_snapshot(app: Any, client: Any) -> None:
    older = _add(app, ALERT, 0)
    newer = _add(app, {**ALERT, "ID": 43}, 1)
    snapshot = client.get("/api/alerts").json()["alerts"]
    assert [a["REF"] for a in snapshot] == [newer, older]
    detail = client.get(f"/api/alerts/{older}").json()
    assert detail["alert"]["ID"] == 42 and detail["has_explanation"] is False
    assert client.get("/api/alerts/9-9").status_code == 404


def test_feedback_refuses_bad_input_before_writing(app: Any, client: Any) -> None:
    ref = _add(app, ALERT)
    base = {"ref": ref, "verdict": "FALSE_POSITIVE", "analyst": "ana", "submission": "s1"}
    cases = [
        ({**base, "verdict": "MAYBE"}, 400),
        ({**base, "analyst": "a" * 500}, 400),
        ({**base, "note": "x" * 2001}, 400),
        ({**base, "note": ["not", "text"]}, 400),
        ({**base, "ref": "7-7"}, 404),
        ({k: v for k, v in base.items() if k != "verdict"}, 400),
    ]
    for body, status in cases:
        response = client.post("/api/feedback", json=body)
        assert response.status_code == status, (body, response.text)
        assert "error" in response.json()
    assert client.post("/api/feedback", content=b"[1, 2]").status_code == 400
    assert client.post("/api/feedback", content=b"{" * 50 + b"}" * 50).status_code == 400
    assert app.state.console.feedback._writer is None  # nothing was ever written


class _CountingWriter:
    def __init__(self) -> None:
        self.written: list[Any] = []

    def write(self, feedback: Any) -> Any:
        self.written.append(feedback)
        return feedback

    def close(self) -> None:
        pass


def test_a_submission_id_writes_at_most_once() -> None:
    desk = FeedbackDesk("t")
    writer = _CountingWriter()
    desk._writer = writer
    first, created = desk.submit("s1", 42, "FALSE_POSITIVE", "ana", "note")
    again, created_again = desk.submit("s1", 42, "FALSE_POSITIVE", "ana", "note")
    assert created and not created_again and first == again
    assert len(writer.written) == 1 and desk.verdicts[42]["VERDICT"] == "FALSE_POSITIVE"
    desk.submit("s2", 42, "CONFIRMED_FRAUD", "ana", None)
    assert len(writer.written) == 2 and desk.verdicts[42]["VERDICT"] == "CONFIRMED_FRAUD"


def test_guard_refuses_cross_site_posts_big_bodies_and_foreign_hosts(app: Any) -> None:
    from services.common.http.serving import guard_config
    from services.console.server import CONSOLE_POLICY

    guard = guard_config(CONSOLE_POLICY, HttpServerSettings(), "127.0.0.1", 8090)
    with TestClient(HttpGuard(app, guard), base_url="http://127.0.0.1:8090") as c:
        form = c.post("/api/feedback", content=b"ref=0-0", headers={"content-type": "text/plain"})
        assert form.status_code == 415
        big = c.post("/api/ksql", json={"sql": "x" * 70_000})
        assert big.status_code == 413
        assert c.get("/api/alerts", headers={"host": "evil.example"}).status_code == 403
        assert c.get("/healthz").json() == {"ok": True}


def test_models_refuse_names_outside_the_registry(tmp_path: Path, client: Any) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "roc.png").write_bytes(b"\x89PNG")
    (tmp_path / "secret.png").write_bytes(b"secret")
    assert plot_bytes(tmp_path, "v1", "roc.png") == b"\x89PNG"
    for version, name in (("v1", "../secret.png"), ("..", "secret.png"), ("v1", "roc.txt")):
        assert plot_bytes(tmp_path, version, name) is None
    assert client.get("/api/models/v1/plots/..%2Fsecret.png").status_code == 404
    assert client.get("/api/models/nope").status_code == 404
    assert client.get("/api/models").json()["versions"] == []


def test_ksql_editor_bounds(client: Any) -> None:
    proxy = KsqlProxy("http://127.0.0.1:9")
    with pytest.raises(EditorError):
        proxy.run("  -- only a comment\n")
    with pytest.raises(EditorError):
        proxy.run("SHOW STREAMS;" * (MAX_STATEMENTS + 1))
    assert client.post("/api/ksql", json={"sql": 3}).status_code == 400
    assert (
        client.post("/api/ksql", json={"sql": "SHOW STREAMS;", "earliest": "yes"}).status_code
        == 400
    )


def test_budget_input_is_checked(client: Any) -> None:
    for body in (
        {"per_10k": 5},
        {"version": "v1", "per_10k": -1},
        {"version": "v1", "per_10k": "5"},
    ):
        assert client.post("/api/budget", json=body).status_code == 400, body


def test_stack_up_adds_the_console_unless_told_otherwise_or_sasl() -> None:
    from services.stack.cli import _with_console

    components, console = _with_console(None)
    assert [c.name for c in components] == ["kafka", "schema-registry", "ksql-server"]
    assert console is not None and console.name == "console"
    assert _with_console("kafka")[1] is None
    only_console = _with_console("console")
    assert only_console[0] == [] and only_console[1] is not None
    assert _with_console(None, sasl=True)[1] is None


def test_run_prints_the_console_with_the_watch_lines() -> None:
    from services.pipeline.labels import LabelCounts
    from services.pipeline.summary import AlertTally, RunSummary, StageRate

    summary = RunSummary(
        records_in=10,
        bad_lines=0,
        labels=LabelCounts(rows=10, labelled=10, frauds=1),
        alerts=AlertTally(alerts=1, true_frauds=1),
        model_version="v1",
        model_line="model v1",
        report=Path("r.md"),
        stages=[StageRate("produce", 10, 1.0)],
        metrics_port=9464,
        console_url="http://127.0.0.1:8090",
    )
    lines = summary.lines()
    watch = lines.index(next(line for line in lines if line.startswith("watch:")))
    assert "console http://127.0.0.1:8090" in " ".join(lines[watch : watch + 3])
    assert lines[-1].startswith("records 10 alerts 1")
