"""The HTTP guard in front of both servers (services/common/http): Host allow-list, Basic auth,
content types, body size and time limits, each answered in the API's own error shape.

The apps are the real ones (the KSQL REST app on a fake engine, the registry in memory), called
through ASGI directly, so a test controls exactly what arrives and when; the last tests run the
guard under hypercorn on a free port to show a slow client cannot hold the server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypercorn.asyncio import serve
from ksql_rest_fakes import FakeEngine

from services.common.errors import FraudstreamError
from services.common.http import hypercorn_config
from services.common.http.auth import BasicAuthenticator, basic_credentials, parse_users
from services.common.http.clients import httpx_options, ksql_api_kwargs, registry_client_conf
from services.common.http.guard import ApiPolicy, GuardConfig, HttpGuard
from services.common.http.hosts import HostAllowList, host_name
from services.common.settings import HttpClientSettings, HttpServerSettings, get_settings
from services.ksql_server.rest import create_app as create_ksql_app
from services.ksql_server.rest.http_policy import KSQL_POLICY
from services.schema_registry.app import create_app as create_registry_app
from services.schema_registry.http_policy import SCHEMA_REGISTRY_POLICY
from services.schema_registry.registry import Registry

USERS = [
    "# Jetty property-file realm",
    "analyst: s3cret, ksql-user",
    "ops = MD5:" + hashlib.md5(b"hashed-pw").hexdigest() + ",admin",  # Jetty's MD5: form
    "guest: guest",
]
SHOW = json.dumps({"ksql": "SHOW STREAMS;", "streamsProperties": {}}).encode()
CREATE = json.dumps(
    {"ksql": "CREATE STREAM s (a INT) WITH (kafka_topic='s', value_format='JSON');"}
).encode()
SCHEMA = json.dumps({"schema": json.dumps({"type": "record", "name": "R", "fields": []})}).encode()
KSQL_JSON = "application/vnd.ksql.v1+json; charset=utf-8"
SR_JSON = "application/vnd.schemaregistry.v1+json"
BROWSER_TYPES = [
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    None,
]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Api:
    """One app behind the guard, with what its requests look like."""

    def __init__(self, kind: str, authenticator: BasicAuthenticator | None = None, **config: Any):
        self.kind = kind
        self.engine = FakeEngine()
        self.registry = Registry()
        policy: ApiPolicy
        if kind == "ksql":
            app: Any = create_ksql_app(self.engine)
            policy = KSQL_POLICY
            self.write = ("POST", "/ksql", CREATE, KSQL_JSON)
            self.read = ("POST", "/ksql", SHOW, KSQL_JSON)
        else:
            app = create_registry_app(self.registry)
            policy = SCHEMA_REGISTRY_POLICY
            self.write = ("POST", "/subjects/s-value/versions", SCHEMA, SR_JSON)
            self.read = ("GET", "/subjects", b"", "")
        hosts = config.pop("hosts", HostAllowList("127.0.0.1"))
        self.config = GuardConfig(policy, hosts, authenticator, **config)
        self.guard = HttpGuard(app, self.config)

    def written(self) -> bool:
        """Whether a write reached the app."""
        if self.kind == "ksql":
            return bool(self.engine.streams)
        return bool(self.registry.subjects("", True))


async def call(
    app: Any,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    chunks: Sequence[bytes] = (b"",),
    gap_s: float = 0.0,
    http_version: str = "1.1",
) -> tuple[int, dict[str, str], bytes]:
    """One request straight into an ASGI app: the body in `chunks`, `gap_s` before each."""
    pending = list(chunks)
    sent: list[dict[str, Any]] = []
    all_headers = {"host": "127.0.0.1:8088", **(headers or {})}
    if not {"content-length", "transfer-encoding"} & set(all_headers) and any(chunks):
        all_headers["content-length"] = str(sum(len(c) for c in chunks))  # as HTTP/1.1 clients do

    async def receive() -> dict[str, Any]:
        if pending:
            body = pending.pop(0)
            if gap_s:
                await asyncio.sleep(gap_s)
            return {"type": "http.request", "body": body, "more_body": bool(pending)}
        await asyncio.sleep(3600)  # a client that keeps the connection open
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items() if v],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8088),
    }
    await asyncio.wait_for(app(scope, receive, send), 20)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], response_headers, body


def request(api: Api, which: str = "read", **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    method, path, body, content_type = api.write if which == "write" else api.read
    headers = dict(kwargs.pop("headers", {}))
    if content_type and "content-type" not in {k.lower() for k in headers}:
        headers["content-type"] = content_type
    chunks = kwargs.pop("chunks", (body,))
    return asyncio.run(call(api.guard, method, path, headers, chunks, **kwargs))


def assert_error_shape(kind: str, status: int, body: bytes, expected_status: int) -> dict[str, Any]:
    assert status == expected_status
    payload: dict[str, Any] = json.loads(body)
    if kind == "ksql":
        assert payload["@type"] == "generic_error"
        assert payload["error_code"] == expected_status * 100
    else:
        assert payload["error_code"] == expected_status
        assert "@type" not in payload
    assert isinstance(payload["message"], str) and payload["message"]
    return payload


@pytest.fixture
def authenticator() -> BasicAuthenticator:
    return BasicAuthenticator(parse_users(USERS))


KINDS = ["ksql", "schema-registry"]


# -- defaults -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_off_by_default_json_passes(kind: str) -> None:
    api = Api(kind)
    status, _, _ = request(api, "write")
    assert status == 200 and api.written()
    assert request(api)[0] == 200


# -- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic("analyst", "wrong"),
        basic("nobody", "s3cret"),
        basic("ops", "MD5:" + hashlib.md5(b"hashed-pw").hexdigest()),  # the hash is no password
        "Basic !!!not-base64",
        "Bearer abc",
    ],
)
def test_missing_or_wrong_credentials_are_401_with_challenge(
    kind: str, authorization: str | None, authenticator: BasicAuthenticator
) -> None:
    api = Api(kind, authenticator)
    headers = {"authorization": authorization} if authorization else {}
    status, response_headers, body = request(api, "write", headers=headers)
    payload = assert_error_shape(kind, status, body, 401)
    assert payload["message"] == "Unauthorized"
    realm = "KsqlServer-Props" if kind == "ksql" else "SchemaRegistry-Props"
    assert response_headers["www-authenticate"] == f'Basic realm="{realm}"'
    assert not api.written()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("user,password", [("analyst", "s3cret"), ("ops", "hashed-pw")])
def test_plaintext_and_md5_users_get_in(
    kind: str, user: str, password: str, authenticator: BasicAuthenticator
) -> None:
    api = Api(kind, authenticator)
    status, _, _ = request(api, "write", headers={"authorization": basic(user, password)})
    assert status == 200 and api.written()


@pytest.mark.parametrize("kind", KINDS)
def test_roles_restrict_who_gets_in(kind: str) -> None:
    api = Api(kind, BasicAuthenticator(parse_users(USERS), roles=["admin", "ksql-user"]))
    status, _, body = request(api, headers={"authorization": basic("guest", "guest")})
    assert_error_shape(kind, status, body, 403)
    assert request(api, headers={"authorization": basic("analyst", "s3cret")})[0] == 200


def test_health_probes_follow_the_confluent_servers(authenticator: BasicAuthenticator) -> None:
    """ksqlDB never asks credentials for /healthcheck; Confluent's registry has no such path."""
    ksql = Api("ksql", authenticator)
    assert asyncio.run(call(ksql.guard, "GET", "/healthcheck"))[0] == 200
    assert asyncio.run(call(ksql.guard, "GET", "/info"))[0] == 401
    registry = Api("schema-registry", authenticator)
    assert asyncio.run(call(registry.guard, "GET", "/"))[0] == 401


def test_users_file_forms() -> None:
    users = parse_users(USERS)
    assert users["analyst"].roles == ("ksql-user",)
    assert users["ops"].password_matches("hashed-pw")
    assert not users["ops"].password_matches("hashed-pW")
    assert "s3cret" not in repr(users["analyst"])
    with pytest.raises(FraudstreamError, match="OBF"):
        parse_users(["x: OBF:1v2j1uum1xtv1zej1zer1xtn1uvk1v1v"])
    with pytest.raises(FraudstreamError, match="expected"):
        parse_users(["no separator here"])
    assert basic_credentials(basic("a", "b:c")) == ("a", "b:c")
    assert basic_credentials("Basic " + base64.b64encode(b"nocolon").decode()) is None


def test_empty_or_missing_users_file_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("# nobody\n")
    for path in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(FraudstreamError):
            BasicAuthenticator.from_file(path)


# -- content types (CSRF) -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("content_type", BROWSER_TYPES)
def test_browser_body_types_are_415_and_change_nothing(kind: str, content_type: str | None) -> None:
    api = Api(kind)
    status, _, body = request(api, "write", headers={"content-type": content_type or ""})
    payload = assert_error_shape(kind, status, body, 415)
    assert "Unsupported Media Type" in payload["message"]
    assert not api.written()


@pytest.mark.parametrize(
    "kind,content_type",
    [
        ("ksql", "application/json"),
        ("ksql", "application/vnd.ksql.v1+json"),
        ("schema-registry", "application/json"),
        ("schema-registry", "application/vnd.schemaregistry+json"),
        ("schema-registry", "application/octet-stream"),
    ],
)
def test_api_types_are_taken(kind: str, content_type: str) -> None:
    api = Api(kind)
    assert request(api, "write", headers={"content-type": content_type})[0] == 200
    assert api.written()


@pytest.mark.parametrize("kind", KINDS)
def test_bodiless_requests_need_no_type(kind: str) -> None:
    """An empty POST or a PATCH without a body reaches the app (it answers 400/405 itself)."""
    api = Api(kind)
    method, path, _, _ = api.write
    empty = asyncio.run(call(api.guard, method, path, {"content-length": "0"}))
    assert empty[0] in (400, 422) and not api.written()
    assert asyncio.run(call(api.guard, "PATCH", path))[0] == 405
    chunked = {"transfer-encoding": "chunked"}
    assert asyncio.run(call(api.guard, method, path, chunked, (api.write[2],)))[0] == 415


def test_close_query_tolerates_no_type_but_not_browser_types() -> None:
    """ksql-python-ng's close_query sends no Content-Type; a form post is still refused."""
    api = Api("ksql")
    body = json.dumps({"queryId": "nope"}).encode()
    status, _, answer = asyncio.run(call(api.guard, "POST", "/close-query", {}, (body,)))
    assert status == 400 and b"No query with id" in answer
    plain = {"content-type": "text/plain"}
    assert asyncio.run(call(api.guard, "POST", "/close-query", plain, (body,)))[0] == 415


# -- Host -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "host,allowed",
    [
        ("localhost:8088", True),
        ("127.0.0.1", True),
        ("[::1]:8088", True),
        ("LOCALHOST.", True),
        ("attacker.example:8088", False),
        ("127.0.0.1.nip.io", False),
        ("ksql.internal:8088", True),
    ],
)
def test_host_allow_list(kind: str, host: str, allowed: bool) -> None:
    api = Api(kind, hosts=HostAllowList("127.0.0.1", ["ksql.internal"]))
    status, _, body = request(api, headers={"host": host})
    if allowed:
        assert status == 200
    else:
        assert "not allowed" in assert_error_shape(kind, status, body, 403)["message"]


def test_host_names_and_wildcard() -> None:
    assert host_name("[::1]:8088") == "::1"
    assert host_name("Example.COM:80") == "example.com"
    assert HostAllowList("127.0.0.1", ["*"]).allows("anything.example")
    assert not HostAllowList("127.0.0.1").allows(None)
    wide = HostAllowList("0.0.0.0")
    assert wide.allows(socket.gethostname()) and not wide.allows("attacker.example")


# -- body size and time ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_declared_length_over_the_limit_is_413_before_reading(kind: str) -> None:
    api = Api(kind)
    limit = api.config.policy.max_body_bytes
    headers = {"content-length": str(limit + 1)}
    status, _, body = request(api, "write", headers=headers, chunks=(b"{",))
    assert_error_shape(kind, status, body, 413)
    assert not api.written()


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_body_is_cut_off_at_the_limit(kind: str) -> None:
    api = Api(kind)
    limit = api.config.policy.max_body_bytes
    megabyte = b" " * 2**20
    chunks = [megabyte] * (limit // 2**20 + 2)  # no Content-Length, as chunked/HTTP/2 send
    headers = {"transfer-encoding": "chunked"}
    status, _, body = request(api, "write", chunks=chunks, headers=headers)
    assert_error_shape(kind, status, body, 413)
    assert not api.written()


@pytest.mark.parametrize("kind", KINDS)
def test_slow_body_is_408(kind: str) -> None:
    api = Api(kind, body_timeout_s=0.3)
    _, _, body, _ = api.write
    half = len(body) // 2
    began = time.monotonic()
    status, _, answer = request(api, "write", chunks=(body[:half], body[half:]), gap_s=2.0)
    assert_error_shape(kind, status, answer, 408)
    assert time.monotonic() - began < 1.5
    assert not api.written()


def test_inserts_stream_is_not_held_to_the_body_deadline() -> None:
    """Rows may trickle into /inserts-stream for as long as the client likes."""
    api = Api("ksql", body_timeout_s=0.2)
    api.engine.streams["S"] = [("A", "INT")]
    api.engine.rows["S"] = []
    chunks = (b'{"target": "S"}\n', b'{"A": 1}\n', b'{"A": 2}\n')
    headers = {"content-type": "application/vnd.ksqlapi.delimited.v1"}
    status, _, body = asyncio.run(
        call(api.guard, "POST", "/inserts-stream", headers, chunks, gap_s=0.3, http_version="2")
    )
    assert status == 200 and body.count(b'"ok"') == 2
    assert api.engine.rows["S"] == [[1], [2]]


# -- under hypercorn ------------------------------------------------------------------------------


class GuardedServer:
    """An app (default: the KSQL app) behind the guard, served by hypercorn on a free port in a
    thread."""

    def __init__(
        self, settings: HttpServerSettings, app: Any = None, policy: ApiPolicy = KSQL_POLICY
    ) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = GuardConfig.from_settings(policy, settings, "127.0.0.1")
        self.app = HttpGuard(app or create_ksql_app(FakeEngine()), config)
        self.hypercorn = hypercorn_config("127.0.0.1", self.port, settings=settings)
        self.stop_event: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self.stop_event, self.loop = asyncio.Event(), asyncio.get_running_loop()
        await serve(self.app, self.hypercorn, shutdown_trigger=self.stop_event.wait)  # type: ignore[arg-type]

    def __enter__(self) -> GuardedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *_: object) -> None:
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=10)


def _read_all(sock: socket.socket, limit_s: float) -> bytes:
    sock.settimeout(limit_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def server_settings(users_file: Path | None = None) -> HttpServerSettings:
    return HttpServerSettings(
        users_file=users_file,
        auth_roles=(),
        tls_certfile=None,
        tls_keyfile=None,
        allowed_hosts=(),
        header_timeout_s=1.0,
        body_timeout_s=1.0,
    )


@pytest.fixture
def guarded_server() -> Iterator[GuardedServer]:
    with GuardedServer(server_settings()) as server:
        yield server


def test_slow_body_over_tcp_gets_408_and_the_connection_ends(guarded_server: GuardedServer) -> None:
    with socket.create_connection(("127.0.0.1", guarded_server.port)) as sock:
        head = (
            "POST /ksql HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(SHOW)}\r\n\r\n"
        )
        sock.sendall(head.encode() + SHOW[:5])
        began = time.monotonic()
        answer = _read_all(sock, 5.0)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert b'"error_code": 40800' in answer
    assert time.monotonic() - began < 4.0


def test_unfinished_headers_are_dropped(guarded_server: GuardedServer) -> None:
    with socket.create_connection(("127.0.0.1", guarded_server.port)) as sock:
        sock.sendall(b"POST /ksql HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        began = time.monotonic()
        answer = _read_all(sock, 5.0)
    assert answer == b"" and time.monotonic() - began < 4.0  # closed by the server


def test_csrf_post_over_tcp_is_415(guarded_server: GuardedServer) -> None:
    """What a hostile page's `fetch(…, {mode: 'no-cors', body: text})` sends."""
    with socket.create_connection(("127.0.0.1", guarded_server.port)) as sock:
        head = (
            "POST /ksql HTTP/1.1\r\nHost: 127.0.0.1:8088\r\nOrigin: https://attacker.example\r\n"
            f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(CREATE)}\r\n\r\n"
        )
        sock.sendall(head.encode() + CREATE)
        answer = _read_all(sock, 1.5)
    assert answer.startswith(b"HTTP/1.1 415"), answer[:80]


def test_registry_forwards_the_callers_credentials_to_the_leader(tmp_path: Path) -> None:
    """A write that reaches a follower is checked again by the leader, with the same user."""
    from types import SimpleNamespace

    from services.schema_registry.kafka_log import NotLeader

    users = tmp_path / "users"
    users.write_text("\n".join(USERS))
    leader_registry = Registry()
    leader = GuardedServer(
        server_settings(users), create_registry_app(leader_registry), SCHEMA_REGISTRY_POLICY
    )

    class Follower:
        def write(self, records: Any) -> None:
            raise NotLeader(leader.url)

    ready = threading.Event()
    ready.set()
    kafka: Any = SimpleNamespace(
        ready=ready, failure=None, advertised_url="http://127.0.0.1:1", forget_leader=lambda: None
    )
    follower_app = create_registry_app(Registry(log_factory=lambda s, lock: Follower()), kafka)
    follower = HttpGuard(
        follower_app,
        GuardConfig(
            SCHEMA_REGISTRY_POLICY, HostAllowList("127.0.0.1"), BasicAuthenticator.from_file(users)
        ),
    )
    path = "/subjects/fwd-value/versions"
    headers = {"content-type": SR_JSON, "authorization": basic("analyst", "s3cret")}
    with leader:
        status, _, body = asyncio.run(call(follower, "POST", path, headers, (SCHEMA,)))
    assert status == 200 and json.loads(body)["id"] == 1, body
    assert leader_registry.subjects("", False) == ["fwd-value"]


# -- settings and the project's clients -----------------------------------------------------------


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FRAUDSTREAM_HTTP_USERS_FILE", str(tmp_path / "users"))
    monkeypatch.setenv("FRAUDSTREAM_HTTP_ALLOWED_HOSTS", "a.example, b.example")
    monkeypatch.setenv("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "sr:pw")
    monkeypatch.setenv("KSQL_BASIC_AUTH_USER_INFO", "k:pw:with:colons")
    monkeypatch.setenv("FRAUDSTREAM_HTTP_CA_FILE", str(tmp_path / "ca.pem"))
    settings = get_settings()
    assert settings.http_server.users_file == tmp_path / "users"
    assert settings.http_server.allowed_hosts == ("a.example", "b.example")
    assert not settings.http_server.tls
    assert "pw" not in repr(settings)  # secrets never printed
    assert registry_client_conf("https://sr:8081") == {
        "url": "https://sr:8081",
        "basic.auth.user.info": "sr:pw",
        "ssl.ca.location": str(tmp_path / "ca.pem"),
    }
    assert httpx_options("ksql")["auth"] == ("k", "pw:with:colons")
    assert ksql_api_kwargs() == {"api_key": "k", "secret": "pw:with:colons"}
    monkeypatch.setenv("FRAUDSTREAM_HTTP_BODY_TIMEOUT_S", "soon")
    with pytest.raises(FraudstreamError, match="FRAUDSTREAM_HTTP_BODY_TIMEOUT_S"):
        get_settings()


def test_clients_without_settings_send_nothing_extra() -> None:
    plain = HttpClientSettings(schema_registry_user_info="", ksql_user_info="", ca_file=None)
    assert httpx_options("schema-registry", plain) == {"verify": True}
    assert registry_client_conf("http://x", plain) == {"url": "http://x"}
