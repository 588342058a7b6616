"""`GET /is_valid_property/{name}` and the server's override denylist, in ksqlDB's shapes
(KsqlResource.isValidProperty): `true`, or a 400 `generic_error` 40000 naming the property.
Served by the real REST app over hypercorn with the in-memory engine of ksql_rest_fakes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from ksql_rest_fakes import FakeEngine, RunningServer

DENIED = "num.stream.threads"


@pytest.fixture
def server() -> Iterator[RunningServer]:
    engine = FakeEngine()
    engine.properties = {  # type: ignore[attr-defined]
        "ksql.properties.overrides.denylist": f"{DENIED}, ksql.streams.cache.max.bytes.buffering"
    }
    running = RunningServer(engine, keepalive_s=0.2)
    running.start()
    yield running
    running.stop()


def _denied(name: str) -> dict[str, object]:
    return {
        "@type": "generic_error",
        "error_code": 40000,
        "message": "A property override was set locally for a property that the server "
        f"prohibits overrides for: '{name}'",
    }


@pytest.mark.parametrize(
    "name", ["auto.offset.reset", "ksql.streams.auto.offset.reset", "ksql.anything", "x.y"]
)
def test_valid_property_is_true(server: RunningServer, name: str) -> None:
    response = httpx.get(f"{server.url}/is_valid_property/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/")
    assert response.json() is True


@pytest.mark.parametrize("name", [DENIED, "ksql.streams.cache.max.bytes.buffering"])
def test_denied_property_is_40000(server: RunningServer, name: str) -> None:
    response = httpx.get(f"{server.url}/is_valid_property/{name}")
    assert response.status_code == 400
    assert response.json() == _denied(name)


def test_denied_override_refused_on_ksql_and_query(server: RunningServer) -> None:
    body = {"ksql": "SHOW STREAMS;", "streamsProperties": {DENIED: 2}}
    response = httpx.post(server.url + "/ksql", json=body)
    assert response.status_code == 400
    assert response.json() == _denied(DENIED)
    assert server.engine.executed == []  # refused before the engine saw it
    body = {"sql": "SELECT * FROM S EMIT CHANGES;", "properties": {DENIED: 2}}
    response = httpx.post(server.url + "/query", json=body)
    assert response.status_code == 400
    assert response.json() == _denied(DENIED)


def test_shared_runtime_allows_only_query_level_properties(server: RunningServer) -> None:
    server.engine.properties["ksql.runtime.feature.shared.enabled"] = "true"  # type: ignore[attr-defined]
    ok = httpx.get(f"{server.url}/is_valid_property/auto.offset.reset")
    assert (ok.status_code, ok.json()) == (200, True)
    refused = httpx.get(f"{server.url}/is_valid_property/max.poll.records")
    assert refused.status_code == 400
    assert refused.json()["error_code"] == 40000
    assert refused.json()["message"].startswith(
        "When shared runtimes are enabled, the config {max.poll.records=} can only be set for "
        "the entire cluster"
    )
