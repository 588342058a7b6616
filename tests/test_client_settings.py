"""Connection settings for real clusters: the allow-listed Confluent client properties from the
environment and from fraudstream.toml (`${ENV}` references), the clients that receive them, and
secrets that never show in a repr, an error or `fraudstream config show`.

Unit tests: no broker. The real SASL_SSL broker is in tests/test_sasl_ssl_pipeline.py.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from typer.testing import CliRunner

from services.broker.launcher import KafkaBroker, _server_properties
from services.broker.sasl import SaslUsers
from services.broker.tls import BrokerTls, make_tls_files
from services.cli import app
from services.common.config_file import CONFIG_ENV, client_setting_names
from services.common.errors import FraudstreamError
from services.common.http.clients import httpx_options, ksql_api_kwargs, registry_client_conf
from services.common.kafka import consumer_config, make_admin, producer_config
from services.common.settings import ENV_DEFAULTS, HTTP_SECURITY_ENV, get_settings
from services.stack.cli import _select

SECRET = "pa55-Wörd-$ecret"
"""A password to look for everywhere it must not be."""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No client setting from the caller's environment, and no ./fraudstream.toml."""
    for name in [*client_setting_names(), *HTTP_SECURITY_ENV, CONFIG_ENV]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fraudstream.toml"
    path.write_text(text)
    return path


def test_environment_variables_map_to_client_properties(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca, _cert, _key = make_tls_files(tmp_path)
    env = {
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "api-key",
        "KAFKA_SASL_PASSWORD": SECRET,
        "KAFKA_SSL_CA_LOCATION": str(ca),
        "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "https",
        "KAFKA_SSL_KEY_PASSWORD": SECRET,
        "KAFKA_MESSAGE_MAX_BYTES": "1",  # not on the allow-list: never reaches a client
        "KAFKA_LISTENERS": "PLAINTEXT://:9092",  # the broker image's own variables
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    expected = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "api-key",
        "sasl.password": SECRET,
        "ssl.ca.location": str(ca),
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.key.password": SECRET,
    }
    for conf in (producer_config("h:1"), consumer_config("g", "h:1")):
        assert {k: conf[k] for k in expected} == expected
        assert "message.max.bytes" not in conf and "listeners" not in conf
    make_admin("127.0.0.1:1", quiet=True)  # librdkafka accepts every allow-listed property
    assert SECRET not in repr(get_settings())


def test_the_environment_names_follow_the_confluent_property_names() -> None:
    names = client_setting_names()
    assert names["KAFKA_SASL_USERNAME"] == ("kafka", "sasl.username", False)
    assert names["KAFKA_SSL_CA_LOCATION"] == ("kafka", "ssl.ca.location", False)
    assert names["SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"] == (
        "schema_registry",
        "basic.auth.user.info",
        True,
    )
    assert names["KSQL_URL"][:2] == ("ksql", "url")
    assert {"KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "KSQL_URL"} <= set(names)
    assert set(ENV_DEFAULTS) - {"FRAUDSTREAM_HOME", "MODELS_DIR"} <= set(names)


CLOUD_TOML = """
[kafka]
"bootstrap.servers" = "pkc-00000.eu-west-1.aws.confluent.cloud:9092"
security.protocol = "SASL_SSL"
sasl.mechanism = "PLAIN"
sasl.username = "${CC_API_KEY}"
sasl.password = "${CC_API_SECRET}"
enable.ssl.certificate.verification = true

[schema_registry]
url = "https://psrc-00000.eu-central-1.aws.confluent.cloud"
"basic.auth.user.info" = "${SR_API_KEY}:${SR_API_SECRET}"

[ksql]
url = "https://pksqlc-00000.eu-west-1.aws.confluent.cloud:443"
basic.auth.user.info = "ksql-key:pr$$ice"
"""


def test_toml_file_with_env_references(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(tmp_path, CLOUD_TOML)  # found as ./fraudstream.toml
    for name, value in {
        "CC_API_KEY": "CCKEY",
        "CC_API_SECRET": SECRET,
        "SR_API_KEY": "SRKEY",
        "SR_API_SECRET": SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    settings = get_settings()
    assert settings.bootstrap_servers == "pkc-00000.eu-west-1.aws.confluent.cloud:9092"
    conf = producer_config()
    assert conf["bootstrap.servers"] == settings.bootstrap_servers
    assert conf["sasl.username"] == "CCKEY" and conf["sasl.password"] == SECRET
    assert conf["enable.ssl.certificate.verification"] == "true"
    registry = registry_client_conf(settings.schema_registry_url)
    assert registry == {
        "url": "https://psrc-00000.eu-central-1.aws.confluent.cloud",
        "basic.auth.user.info": f"SRKEY:{SECRET}",
    }
    assert ksql_api_kwargs() == {"api_key": "ksql-key", "secret": "pr$ice"}  # $$ is one $
    assert httpx_options("ksql")["auth"] == ("ksql-key", "pr$ice")

    monkeypatch.setenv("KAFKA_SASL_USERNAME", "from-env")  # the environment wins
    assert producer_config()["sasl.username"] == "from-env"


def test_config_path_from_fraudstream_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('[kafka]\n"bootstrap.servers" = "b:9093"\n')
    monkeypatch.setenv(CONFIG_ENV, str(path))
    assert get_settings().bootstrap_servers == "b:9093"
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "missing.toml"))
    with pytest.raises(FraudstreamError, match=r"FRAUDSTREAM_CONFIG=.*no such file"):
        get_settings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[kafka]\nsasl.password = '${NOT_SET_ANYWHERE}'\n", r"\$\{NOT_SET_ANYWHERE\}, which is"),
        ("[kafka]\nsasl.password = 'a$b'\n", r"lone '\$'"),
        ("[kafka]\n'message.max.bytes' = 1\n", "not a supported property"),
        ("[kafka]\nsasl.password = ['x']\n", "must be a string"),
        ("[producer]\nx = 1\n", r"unknown table \[producer\]"),
        ("[kafka\n", "cannot read"),
        ("[kafka]\nsecurity.protocol = 'SASL_TLS'\n", r"\[kafka\] security.protocol in"),
    ],
)
def test_config_file_mistakes_are_one_line_errors_without_values(
    tmp_path: Path, text: str, message: str
) -> None:
    write_config(tmp_path, text.replace("'a$b'", f"'{SECRET}'") if "a$b" in text else text)
    with pytest.raises(FraudstreamError, match=message) as caught:
        get_settings()
    assert SECRET not in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_certificate_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem")
    with pytest.raises(FraudstreamError, match=r"KAFKA_SSL_CA_LOCATION=/nonexistent/ca\.pem"):
        get_settings()
    monkeypatch.setenv("KAFKA_SSL_CA_LOCATION", "probe")  # librdkafka: find the system's
    assert producer_config()["ssl.ca.location"] == "probe"


def test_registry_and_ksql_have_their_own_ca(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_config(
        tmp_path,
        "[schema_registry]\n'ssl.ca.location' = '/sr-ca.pem'\n",
    )
    monkeypatch.setenv("FRAUDSTREAM_HTTP_CA_FILE", "/shared-ca.pem")
    assert registry_client_conf("https://r")["ssl.ca.location"] == "/sr-ca.pem"
    assert httpx_options("schema-registry")["verify"] == "/sr-ca.pem"
    assert httpx_options("ksql")["verify"] == "/shared-ca.pem"


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(tmp_path, CLOUD_TOML)
    for name in ("CC_API_KEY", "SR_API_KEY"):
        monkeypatch.setenv(name, name.lower())
    for name in ("CC_API_SECRET", "SR_API_SECRET"):
        monkeypatch.setenv(name, SECRET)
    monkeypatch.setenv("KAFKA_SSL_KEY_PASSWORD", SECRET)
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert SECRET not in out and "pr$ice" not in out
    assert (
        "KAFKA_SASL_PASSWORD" in out and "file [kafka] sasl.password from ${CC_API_SECRET}" in out
    )
    assert "sr_api_key:****" in out and "ksql-key:****" in out
    assert "KAFKA_SSL_KEY_PASSWORD" in out and "environment" in out
    assert "pkc-00000.eu-west-1.aws.confluent.cloud:9092" in out
    last = out.strip().splitlines()[-1]
    assert last.endswith("from the environment; file fraudstream.toml)") and " settings (" in last


def test_config_show_warns_of_a_secret_written_in_a_readable_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"[kafka]\nsasl.password = '{SECRET.replace('$', '$$')}'\n")
    path.chmod(0o644)
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0 and SECRET not in result.output
    assert "written in the file: prefer ${NAME}" in result.output
    assert "others may read it" in result.output
    path.chmod(0o600)
    assert "others may read it" not in CliRunner().invoke(app, ["config", "show"]).output


def test_config_show_reports_a_bad_setting_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SECRET)  # no user
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code != 0
    assert "needs KAFKA_SASL_USERNAME" in str(result.exception)
    assert SECRET not in str(result.exception) + result.output


# --- the embedded broker's SASL_SSL set-up ---------------------------------------------------
def test_broker_tls_files(tmp_path: Path) -> None:
    tls = BrokerTls(tmp_path / "tls").ensure()
    for private in (tls.keystore, tls.password_file):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key, cert, chain = pkcs12.load_key_and_certificates(
        tls.keystore.read_bytes(), tls.password().encode()
    )
    assert key is not None and cert is not None
    ca = x509.load_pem_x509_certificate(tls.ca.read_bytes())
    assert [c.subject for c in chain] == [ca.subject] and cert.issuer == ca.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    before = tls.ca.read_bytes()
    assert tls.ensure().ca.read_bytes() == before  # made once, kept across restarts
    assert tls.password() not in repr(tls)

    users = SaslUsers.generate()
    props = _server_properties(29092, tmp_path / "data", users, tls)
    assert "listeners=SASL_SSL://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093" in props
    assert "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT" in props
    assert f"ssl.keystore.location={tls.keystore}" in props
    assert "ssl.keystore.type=PKCS12" in props and "inter.broker.listener.name=SASL_SSL" in props


def test_each_server_gets_its_own_sasl_user(tmp_path: Path) -> None:
    broker = KafkaBroker(
        get_settings().__class__(bootstrap_servers="127.0.0.1:29092", home=tmp_path)
    )
    users = SaslUsers.generate()
    tls = broker.tls.ensure()
    users.save(broker.sasl_dir, broker.address, tls)
    env = broker.client_env("ksql")
    assert env == {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "ksql",
        "KAFKA_SASL_PASSWORD": users.passwords["ksql"],
        "KAFKA_SSL_CA_LOCATION": str(tls.ca),
    }
    saved = (broker.sasl_dir / "ksql.env").read_text()
    assert saved == "".join(f"{k}={v}\n" for k, v in env.items())
    assert "ssl.truststore.location=" in (broker.sasl_dir / "ksql.properties").read_text()


def test_stack_up_sasl_ssl_starts_the_whole_stack_with_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    components = _select(None, sasl_ssl=True)
    assert [c.name for c in components] == ["kafka", "schema-registry", "ksql-server"]
    broker = components[0]
    assert broker.broker.settings.broker_sasl and broker.broker.settings.broker_tls  # type: ignore[union-attr]
    assert [getattr(c, "kafka_user", None) for c in components[1:]] == ["schema-registry", "ksql"]
    assert os.environ.get("FRAUDSTREAM_BROKER_TLS") is None
