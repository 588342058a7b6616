"""SASL users and ACLs of the embedded broker: who may write the model announcements.

`fraudstream_models` tells every scorer which model to load, so whoever can write it decides what
runs in production. With SASL on, each service connects as its own user (SCRAM-SHA-512, created
when the storage is formatted), the broker's StandardAuthorizer checks every request, and the
project's ACLs let only the trainer write that topic; every other service may read it.

Users and their generated passwords are kept in `$FRAUDSTREAM_HOME/kafka/sasl/` (mode 0600): one
`<user>.env` per user to `source` before starting that service, one `<user>.properties` for
Kafka's own Java tools (`--command-config`), and `users.json` for the launcher. Nothing here
prints a password.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from services.broker.tls import BrokerTls, write_private
from services.common.config_file import env_name
from services.common.errors import FraudstreamError
from services.common.kafka import make_admin
from services.common.topics import MODELS_TOPIC

MECHANISM = "SCRAM-SHA-512"
"""Clients and brokers authenticate with this on the client listener."""
CONTROLLER_MECHANISM = "PLAIN"
"""The controller listener uses PLAIN (from the JAAS config): KRaft cannot check SCRAM there,
its SCRAM credentials live in the metadata the controller itself serves."""
ADMIN_USER = "admin"
"""The broker's own principal and the operator's: a super user, the only one that changes ACLs."""
TRAINER_USER = "trainer"
SERVICE_USERS: tuple[str, ...] = (
    TRAINER_USER,
    "scorer",
    "producer",
    "ksql",
    "schema-registry",
    "alerts",
    "console",
)
"""One principal per service. Only the trainer may write `fraudstream_models`."""
_MODELS_TOPIC_WRITES = (
    AclOperation.WRITE,
    AclOperation.DELETE,
    AclOperation.ALTER,
    AclOperation.ALTER_CONFIGS,
)
"""What the other services may not do to the models topic (a DENY wins over any ALLOW)."""


@dataclass(frozen=True)
class SaslUsers:
    """The users of one broker's data directory, with their passwords (never printed)."""

    passwords: dict[str, str]

    def __repr__(self) -> str:
        return f"SaslUsers({sorted(self.passwords)})"

    @classmethod
    def generate(cls, users: Iterable[str] = (ADMIN_USER, *SERVICE_USERS)) -> SaslUsers:
        # hex only: the password appears in JAAS and --add-scram syntax, which have no escaping
        return cls({user: secrets.token_hex(24) for user in users})

    def client_config(self, user: str, ca: Path | None = None) -> dict[str, str]:
        """The Confluent client properties to connect as `user` (over TLS, trusting `ca`, when
        the broker's listener is SASL_SSL)."""
        if user not in self.passwords:
            raise FraudstreamError(
                f"no SASL user {user!r} (known: {', '.join(self.passwords)})", code="sasl_user"
            )
        conf = {
            "security.protocol": "SASL_SSL" if ca else "SASL_PLAINTEXT",
            "sasl.mechanism": MECHANISM,
            "sasl.username": user,
            "sasl.password": self.passwords[user],
        }
        if ca:
            conf["ssl.ca.location"] = str(ca)
        return conf

    def client_env(self, user: str, bootstrap: str, ca: Path | None = None) -> dict[str, str]:
        """The environment variables that give a service `user`'s client properties."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        for prop, value in self.client_config(user, ca).items():
            env[env_name("kafka", prop)] = value
        return env

    def scram_arguments(self) -> list[str]:
        """`kafka-storage format` arguments that create every user's SCRAM credential."""
        args: list[str] = []
        for user, password in self.passwords.items():
            args += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
        return args

    # --- files -------------------------------------------------------------------------------
    def save(self, folder: Path, bootstrap: str, tls: BrokerTls | None = None) -> None:
        """users.json for the launcher, a sourceable `<user>.env` and a Java client
        `<user>.properties` per user, all 0600 (rewritten at each start: TLS may be new)."""
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        _write_private(folder / "users.json", json.dumps(self.passwords, indent=1))
        ca = tls.ca if tls else None
        for user, password in self.passwords.items():
            env = self.client_env(user, bootstrap, ca)
            _write_private(folder / f"{user}.env", "".join(f"{k}={v}\n" for k, v in env.items()))
            java_tls = f"ssl.truststore.type=PEM\nssl.truststore.location={ca}\n" if ca else ""
            _write_private(
                folder / f"{user}.properties",
                f"security.protocol={env['KAFKA_SECURITY_PROTOCOL']}\n"
                f"sasl.mechanism={MECHANISM}\n"
                f"sasl.jaas.config={_scram_login(user, password)}\n{java_tls}",
            )

    @classmethod
    def load(cls, folder: Path) -> SaslUsers | None:
        path = folder / "users.json"
        if not path.is_file():
            return None
        try:
            passwords = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise FraudstreamError(
                f"cannot read the SASL users in {path}: {exc}", code="sasl_users_file"
            ) from exc
        if not isinstance(passwords, dict) or ADMIN_USER not in passwords:
            raise FraudstreamError(
                f"{path} is not a SASL users file of fraudstream", code="sasl_users_file"
            )
        return cls({str(k): str(v) for k, v in passwords.items()})


def _write_private(path: Path, text: str) -> None:
    write_private(path, text.encode())


def _scram_login(user: str, password: str) -> str:
    return (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user}" password="{password}";'
    )


def sasl_server_properties(port: int, users: SaslUsers, tls: BrokerTls | None = None) -> str:
    """server.properties lines for a SASL_PLAINTEXT client listener (SASL_SSL with `tls`),
    SCRAM-SHA-512, and a SASL_PLAINTEXT controller listener (PLAIN) on loopback, with the
    StandardAuthorizer."""
    admin = users.passwords[ADMIN_USER]
    scram = _scram_login(ADMIN_USER, admin)
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN_USER}" password="{admin}" user_{ADMIN_USER}="{admin}";'
    )
    listener = "SASL_SSL" if tls else "SASL_PLAINTEXT"
    name = listener.lower()
    return f"""listeners={listener}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}
advertised.listeners={listener}://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name={listener}
listener.security.protocol.map={listener}:{listener},CONTROLLER:SASL_PLAINTEXT
sasl.enabled.mechanisms={MECHANISM}
sasl.mechanism.inter.broker.protocol={MECHANISM}
sasl.mechanism.controller.protocol={CONTROLLER_MECHANISM}
listener.name.{name}.sasl.enabled.mechanisms={MECHANISM}
listener.name.{name}.{MECHANISM.lower()}.sasl.jaas.config={scram}
listener.name.controller.sasl.enabled.mechanisms={CONTROLLER_MECHANISM}
listener.name.controller.{CONTROLLER_MECHANISM.lower()}.sasl.jaas.config={plain}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{ADMIN_USER}
allow.everyone.if.no.acl.found=false
{tls.server_properties() if tls else ""}"""


# --- ACLs ------------------------------------------------------------------------------------
def project_acls(
    users: Sequence[str] = SERVICE_USERS,
    writer: str = TRAINER_USER,
    models_topic: str = MODELS_TOPIC,
) -> list[AclBinding]:
    """Every service may use every topic, group and transactional id, except that only
    `writer` may write (or delete, or reconfigure) `models_topic`; the others may read it."""
    bindings: list[AclBinding] = []
    for user in users:
        principal = f"User:{user}"

        def allow(kind: ResourceType, name: str, op: AclOperation, who: str = principal) -> None:
            bindings.append(
                AclBinding(
                    kind, name, ResourcePatternType.LITERAL, who, "*", op, AclPermissionType.ALLOW
                )
            )

        allow(ResourceType.TOPIC, "*", AclOperation.ALL)
        allow(ResourceType.GROUP, "*", AclOperation.ALL)
        allow(ResourceType.TRANSACTIONAL_ID, "*", AclOperation.ALL)
        allow(ResourceType.BROKER, "kafka-cluster", AclOperation.DESCRIBE)
        allow(ResourceType.BROKER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE)
        if user == writer:
            continue
        for operation in _MODELS_TOPIC_WRITES:
            bindings.append(
                AclBinding(
                    ResourceType.TOPIC,
                    models_topic,
                    ResourcePatternType.LITERAL,
                    principal,
                    "*",
                    operation,
                    AclPermissionType.DENY,
                )
            )
    return bindings


def apply_acls(
    bootstrap: str, admin_config: dict[str, Any], bindings: list[AclBinding], timeout: float = 30.0
) -> int:
    """Create the bindings as the admin principal (creating an existing one is harmless);
    returns how many were applied."""
    admin = make_admin(bootstrap, **admin_config)
    try:
        futures = admin.create_acls(bindings, request_timeout=timeout)
        for future in futures.values():
            future.result(timeout)
    except KafkaException as exc:
        raise FraudstreamError(
            f"applying the ACLs on {bootstrap} failed: {exc}", code="acl_failed"
        ) from exc
    return len(bindings)
