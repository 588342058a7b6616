"""Both servers with Basic auth and TLS on, on the real broker, started the way `stack up` starts
them (services/stack/components.py) with only the environment changed (docs/security.md).

Checks what a user of each API sees: confluent-kafka's SchemaRegistryClient with
`basic.auth.user.info` and a CA registers a schema; the KSQL server (whose own registry client now
needs credentials too) writes Avro; SHOW STREAMS works over HTTP/1.1 and HTTP/2 (ALPN) with httpx
and through ksql-python-ng; no credentials is a 401; a browser-style `text/plain` POST is a 415
and creates nothing, even when the browser would attach the user's credentials.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from services.broker.tls import make_tls_files
from services.common.http.clients import ksql_api_kwargs, registry_client_conf
from services.common.kafka import delete_topics
from services.common.process import free_port
from services.common.settings import Settings, get_settings
from services.stack.components import HttpServerComponent

pytestmark = pytest.mark.slow

PASSWORD = "analyst-pw"


class SecureStack:
    def __init__(
        self, registry: HttpServerComponent, ksql: HttpServerComponent, ca: Path, unique: str
    ) -> None:
        self.registry = registry
        self.ksql = ksql
        self.ca = ca
        self.unique = unique
        """Names this module's topics and streams (deleted at the end)."""


@pytest.fixture(scope="module")
def secure_stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureStack]:
    """Both servers, started once for this module (each start replays topics; the cores are
    shared), with the environment a user would set."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from _secure_stack(kafka_bootstrap, tmp_path_factory.mktemp("sec"), monkeypatch)


def _secure_stack(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SecureStack]:
    unique = uuid.uuid4().hex[:8]
    ca, cert, key = make_tls_files(tmp_path)
    users = tmp_path / "users.properties"
    md5 = hashlib.md5(b"stack-pw").hexdigest()
    users.write_text(f"analyst: {PASSWORD},ksql-user\nstack: MD5:{md5},admin\n")
    registry_url = f"https://127.0.0.1:{free_port()}"
    ksql_url = f"https://localhost:{free_port()}"
    for name, value in {
        "SCHEMA_REGISTRY_URL": registry_url,
        "KSQL_URL": ksql_url,
        "FRAUDSTREAM_HTTP_USERS_FILE": str(users),
        "FRAUDSTREAM_HTTP_TLS_CERTFILE": str(cert),
        "FRAUDSTREAM_HTTP_TLS_KEYFILE": str(key),
        "FRAUDSTREAM_HTTP_CA_FILE": str(ca),
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "stack:stack-pw",
        "KSQL_BASIC_AUTH_USER_INFO": f"analyst:{PASSWORD}",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(home=tmp_path / "home")
    schemas_topic = f"_schemas_sec_{unique}"
    registry = HttpServerComponent(
        "schema-registry",
        registry_url,
        "/",
        ("registry", "serve", "--topic", schemas_topic, "--group", f"sec-{unique}"),
        settings,
        "schema-registry",
    )
    ksql = HttpServerComponent(
        "ksql-server",
        ksql_url,
        "/healthcheck",
        ("ksql", "serve", "--service-id", f"sec_{unique}_"),
        settings,
        "ksql",
        start_timeout=120.0,
    )
    try:
        registry.start()
        ksql.start()
        yield SecureStack(registry, ksql, ca, unique)
    finally:
        for component in (ksql, registry):
            if not component.stop():
                print(component.process.log_tail())
        delete_topics(
            [schemas_topic, f"_confluent-ksql-sec_{unique}__command_topic", f"sec_{unique}"],
            kafka_bootstrap,
        )


def _show_streams(client: httpx.Client, url: str) -> httpx.Response:
    body = {"ksql": "SHOW STREAMS;", "streamsProperties": {}}
    return client.post(f"{url}/ksql", json=body, timeout=30)


def _stream_names(client: httpx.Client, url: str) -> set[str]:
    response = _show_streams(client, url)
    assert response.status_code == 200, response.text
    return {s["name"] for s in response.json()[0]["streams"]}


def test_auth_and_tls_end_to_end(secure_stack: SecureStack) -> None:
    unique = secure_stack.unique
    registry_url, ksql_url, ca = secure_stack.registry.url, secure_stack.ksql.url, secure_stack.ca
    assert secure_stack.registry.healthy() and secure_stack.ksql.healthy()

    # confluent-kafka's client with basic.auth.user.info and the CA
    conf = registry_client_conf(registry_url)
    assert conf["basic.auth.user.info"] == "stack:stack-pw" and conf["ssl.ca.location"] == str(ca)
    schema = Schema(json.dumps({"type": "record", "name": "R", "fields": []}), "AVRO")
    schema_id = SchemaRegistryClient(conf).register_schema(f"sec-{unique}-value", schema)
    assert schema_id > 0
    with pytest.raises(SchemaRegistryError) as refused:
        SchemaRegistryClient({"url": registry_url, "ssl.ca.location": str(ca)}).get_subjects()
    assert refused.value.http_status_code == 401 and refused.value.error_code == 401

    auth = ("analyst", PASSWORD)
    with httpx.Client(http1=True, http2=False, verify=str(ca), auth=auth) as h1:
        first = _show_streams(h1, ksql_url)
        assert first.status_code == 200 and first.http_version == "HTTP/1.1"
        # the KSQL server's own registry client authenticates too: INSERT VALUES writes Avro
        statement = (
            f"CREATE STREAM sec_{unique} (ID INT, V VARCHAR) WITH "
            f"(KAFKA_TOPIC='sec_{unique}', VALUE_FORMAT='AVRO', PARTITIONS=1);"
            f"INSERT INTO sec_{unique} (ID, V) VALUES (1, 'x');"
        )
        created = h1.post(f"{ksql_url}/ksql", json={"ksql": statement}, timeout=60)
        assert created.status_code == 200, created.text
    subjects = SchemaRegistryClient(conf).get_subjects()
    assert f"sec_{unique}-value" in subjects

    with httpx.Client(http1=False, http2=True, verify=str(ca), auth=auth) as h2:
        second = _show_streams(h2, ksql_url)
        assert second.status_code == 200 and second.http_version == "HTTP/2"
        assert f"SEC_{unique.upper()}" in {s["name"] for s in second.json()[0]["streams"]}


def test_ksql_python_ng_with_credentials(
    secure_stack: SecureStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ksql import KSQLAPI  # type: ignore[attr-defined]

    monkeypatch.setenv("SSL_CERT_FILE", str(secure_stack.ca))  # httpx<0.28 trusts it
    client = KSQLAPI(secure_stack.ksql.url, **ksql_api_kwargs())
    answer = client.ksql("SHOW STREAMS")
    assert answer[0]["@type"] == "streams"
    with pytest.raises(ValueError, match="Unauthorized"):  # it asks /info at construction
        KSQLAPI(secure_stack.ksql.url, api_key="analyst", secret="nope")


def test_refusals_without_credentials_and_csrf(secure_stack: SecureStack) -> None:
    unique = secure_stack.unique
    ksql_url, ca = secure_stack.ksql.url, str(secure_stack.ca)
    with httpx.Client(verify=ca) as anonymous:
        refused = _show_streams(anonymous, ksql_url)
        assert refused.status_code == 401
        assert refused.json() == {
            "@type": "generic_error",
            "error_code": 40100,
            "message": "Unauthorized",
        }
        assert refused.headers["www-authenticate"].startswith("Basic realm=")
        assert anonymous.get(ksql_url + "/healthcheck").status_code == 200  # as in ksqlDB
        registry = anonymous.get(secure_stack.registry.url + "/subjects")
        assert registry.status_code == 401
        assert registry.json() == {"error_code": 401, "message": "Unauthorized"}

    # a hostile page's form-like POST, with the credentials a browser would have cached
    with httpx.Client(verify=ca, auth=("analyst", PASSWORD)) as browser:
        statement = (
            f"CREATE STREAM csrf_{unique} (A INT) WITH "
            f"(KAFKA_TOPIC='sec_{unique}', VALUE_FORMAT='JSON', PARTITIONS=1);"
        )
        forged = browser.post(
            ksql_url + "/ksql",
            content=json.dumps({"ksql": statement}),
            headers={"content-type": "text/plain;charset=UTF-8", "origin": "https://evil.example"},
        )
        assert forged.status_code == 415
        assert forged.json()["error_code"] == 41500
        assert f"CSRF_{unique.upper()}" not in _stream_names(browser, ksql_url)
        rebound = browser.get(ksql_url + "/info", headers={"host": "evil.example"})
        assert rebound.status_code == 403


def test_stack_health_checks_need_the_credentials(
    secure_stack: SecureStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "stack:wrong")
    assert get_settings().http_client.schema_registry_user_info == "stack:wrong"
    assert not secure_stack.registry.healthy()
    assert secure_stack.ksql.healthy()  # /healthcheck is open, as in ksqlDB
