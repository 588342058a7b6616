"""The embedded broker with SASL/SCRAM and the project's ACLs: only the trainer writes the model
announcements, every other service reads them, a wrong password is a clear error at once.

The slow test starts a second broker of our own in a temp dir, on free ports (bound to port 0
to find them), so the session's broker is untouched.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Message, TopicPartition
from confluent_kafka.admin import AclOperation, AclPermissionType

from services.broker.launcher import KafkaBroker, _server_properties
from services.broker.sasl import (
    ADMIN_USER,
    SERVICE_USERS,
    TRAINER_USER,
    SaslUsers,
    apply_acls,
    project_acls,
)
from services.common.errors import FraudstreamError
from services.common.kafka import (
    KafkaAuthenticationFailed,
    make_consumer,
    make_producer,
    producer_config,
    wait_for_broker,
)
from services.common.process import free_port_pair
from services.common.settings import KafkaSecurity, Secret, Settings, get_settings
from services.common.topics import MODELS_TOPIC

pytestmark = pytest.mark.own_stack  # its own broker/stack: runs beside the shared-stack tests

SASL_ENV = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "trainer",
    "KAFKA_SASL_PASSWORD": "s3cret-value",
}


def test_client_security_comes_from_the_environment_and_never_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SASL_ENV.items():
        monkeypatch.setenv(name, value)
    settings = get_settings()
    conf = producer_config("127.0.0.1:1")
    assert {k: conf[k] for k in ("security.protocol", "sasl.mechanism", "sasl.username")} == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "trainer",
    }
    assert conf["sasl.password"] == "s3cret-value"
    for shown in (repr(settings), str(settings.kafka_security), settings.kafka_security.describe()):
        assert "s3cret" not in shown
    assert "trainer" in settings.kafka_security.describe()


def test_plaintext_clients_get_no_security_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SASL_ENV:
        monkeypatch.delenv(name, raising=False)
    conf = producer_config("127.0.0.1:1")
    assert not any(key.startswith(("sasl.", "security.")) for key in conf)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({**SASL_ENV, "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
        ({**SASL_ENV, "KAFKA_SASL_PASSWORD": ""}, "KAFKA_SASL_PASSWORD"),
    ],
)
def test_incomplete_or_unknown_security_settings_are_user_errors(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name in SASL_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(FraudstreamError, match=message):
        KafkaSecurity.from_env()


def test_secret_hides_its_value() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) + str(secret) + f"{secret}"
    assert secret.reveal() == "hunter2" and secret == Secret("hunter2")


def test_sasl_server_properties_and_acls() -> None:
    users = SaslUsers.generate()
    props = _server_properties(29092, Path("/data"), users)
    assert "listeners=SASL_PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093" in props
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in props
    assert "super.users=User:admin" in props and "PLAINTEXT://127.0.0.1:29092" in props
    assert "allow.everyone.if.no.acl.found=false" in props
    assert "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT" in props
    assert users.passwords[ADMIN_USER] not in repr(users)
    args = users.scram_arguments()
    assert args.count("--add-scram") == len(SERVICE_USERS) + 1
    denied = [b for b in project_acls() if b.permission_type == AclPermissionType.DENY]
    assert {b.principal for b in denied} == {f"User:{u}" for u in SERVICE_USERS if u != "trainer"}
    assert {b.name for b in denied} == {MODELS_TOPIC}
    assert {b.operation for b in denied} == {
        AclOperation.WRITE,
        AclOperation.DELETE,
        AclOperation.ALTER,
        AclOperation.ALTER_CONFIGS,
    }


# --- against a real SASL broker ------------------------------------------------------------------
@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    home = tmp_path_factory.mktemp("sasl-home")
    port = free_port_pair()
    broker = KafkaBroker(
        Settings(bootstrap_servers=f"127.0.0.1:{port}", home=home, broker_sasl=True)
    )
    shared_libs = KafkaBroker.from_env().resolve_jars()
    broker.root.mkdir(parents=True)
    broker.libs.symlink_to(shared_libs, target_is_directory=True)
    try:
        broker.start()
        apply_acls(broker.address, broker.admin_config(), project_acls())
        yield broker
    finally:
        broker.stop()


def _produce(broker: KafkaBroker, user: str, value: bytes) -> KafkaError | None:
    users = broker.sasl_users()
    assert users is not None
    outcome: list[KafkaError | None] = []
    producer = make_producer(
        broker.address,
        on_delivery=lambda err, _msg: outcome.append(err),
        **{"message.timeout.ms": 15000},
        **users.client_config(user),
    )
    producer.produce(MODELS_TOPIC, key=b"fraud-autoencoder", value=value)
    assert producer.flush(30) == 0
    return outcome[0]


def _read_models_topic(broker: KafkaBroker, user: str) -> list[Message]:
    users = broker.sasl_users()
    assert users is not None
    consumer = make_consumer(f"read-{user}", broker.address, **users.client_config(user))
    consumer.assign([TopicPartition(MODELS_TOPIC, 0, 0)])
    got: list[Message] = []
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            got += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
            _low, high = consumer.get_watermark_offsets(TopicPartition(MODELS_TOPIC, 0))
            if len(got) >= high > 0:
                break
    finally:
        consumer.close()
    return got


@pytest.mark.slow
def test_only_the_trainer_writes_the_models_topic(sasl_broker: KafkaBroker) -> None:
    users = sasl_broker.sasl_users()
    assert users is not None and set(users.passwords) == {ADMIN_USER, *SERVICE_USERS}
    for path in sasl_broker.sasl_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(sasl_broker.config_file.stat().st_mode) == 0o600
    assert json.loads((sasl_broker.sasl_dir / "users.json").read_text()) == users.passwords

    assert _produce(sasl_broker, TRAINER_USER, b'{"version": "v1"}') is None
    refused = _produce(sasl_broker, "ksql", b'{"version": "evil"}')
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert _produce(sasl_broker, "scorer", b'{"version": "evil"}') is not None

    for reader in ("scorer", "ksql"):  # the others may read it: only the trainer's record
        assert [m.value() for m in _read_models_topic(sasl_broker, reader)] == [
            b'{"version": "v1"}'
        ]


@pytest.mark.slow
def test_wrong_password_or_no_credentials_fail_quickly(sasl_broker: KafkaBroker) -> None:
    users = sasl_broker.sasl_users()
    assert users is not None
    wrong = {**users.client_config(TRAINER_USER), "sasl.password": "not-the-password"}
    started = time.monotonic()
    with pytest.raises(
        KafkaAuthenticationFailed, match="refused the credentials of user 'trainer'"
    ):
        wait_for_broker(sasl_broker.address, timeout=30, **wrong)
    assert time.monotonic() - started < 10
    from services.common.errors import ServiceUnavailable

    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):  # a PLAINTEXT client gets no answer, not a hang
        wait_for_broker(sasl_broker.address, timeout=3, **{"security.protocol": "PLAINTEXT"})
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_a_sasl_data_directory_stays_sasl(sasl_broker: KafkaBroker, tmp_path: Path) -> None:
    """Restarting without the flag keeps SASL on; a PLAINTEXT directory cannot be switched."""
    plain = KafkaBroker(
        Settings(bootstrap_servers=sasl_broker.address, home=sasl_broker.settings.home)
    )
    assert plain.sasl_users() is not None and plain.admin_config()["sasl.username"] == "admin"
    assert plain.healthy()
    other = KafkaBroker(Settings(bootstrap_servers="127.0.0.1:1", home=tmp_path, broker_sasl=True))
    other.data_dir.mkdir(parents=True)
    (other.data_dir / "meta.properties").write_text("cluster.id=x\nnode.id=1\n")
    with pytest.raises(FraudstreamError, match="formatted without SASL"):
        other._prepare_sasl()
