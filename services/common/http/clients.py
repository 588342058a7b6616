"""What the project's own clients send to a protected KSQL server or Schema Registry.

Credentials come from `SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO` / `KSQL_BASIC_AUTH_USER_INFO`
(`user:password`, confluent-kafka's `basic.auth.user.info` form, or `basic.auth.user.info` in
fraudstream.toml's [schema_registry] / [ksql] tables) and the CA that signs the servers'
certificates from `SCHEMA_REGISTRY_SSL_CA_LOCATION` / `KSQL_SSL_CA_LOCATION`, else
`FRAUDSTREAM_HTTP_CA_FILE`. Every client of the two servers (the
stack's health checks, `fraudstream ksql …`, the KSQL server's registry client, the Avro serdes)
builds its connection through here, so turning security on is a matter of the environment.
"""

from __future__ import annotations

from typing import Any, Literal

from services.common.errors import FraudstreamError
from services.common.settings import HttpClientSettings, get_settings

Service = Literal["ksql", "schema-registry"]


def user_info(service: Service, settings: HttpClientSettings | None = None) -> str:
    client = settings or get_settings().http_client
    return client.ksql_user_info if service == "ksql" else client.schema_registry_user_info


def basic_auth(
    service: Service, settings: HttpClientSettings | None = None
) -> tuple[str, str] | None:
    """(user, password) for httpx's `auth=`, None when no credentials are configured."""
    info = user_info(service, settings)
    if not info:
        return None
    user, sep, password = info.partition(":")
    if not sep:
        variable = "KSQL" if service == "ksql" else "SCHEMA_REGISTRY"
        raise FraudstreamError(
            f"{variable}_BASIC_AUTH_USER_INFO must be user:password", code="bad_setting"
        )
    return user, password


def verify(
    settings: HttpClientSettings | None = None, service: Service | None = None
) -> str | bool:
    """httpx's `verify=`: the service's CA file (`<SERVICE>_SSL_CA_LOCATION`, else
    FRAUDSTREAM_HTTP_CA_FILE), else the system's trust store."""
    client = settings or get_settings().http_client
    ca = client.ca_for(service)
    return str(ca) if ca is not None else True


def httpx_options(service: Service, settings: HttpClientSettings | None = None) -> dict[str, Any]:
    """`auth` and `verify` keyword arguments for an httpx call or client."""
    options: dict[str, Any] = {"verify": verify(settings, service)}
    auth = basic_auth(service, settings)
    if auth is not None:
        options["auth"] = auth
    return options


def registry_client_conf(url: str, settings: HttpClientSettings | None = None) -> dict[str, Any]:
    """The configuration of confluent-kafka's `SchemaRegistryClient` for `url`."""
    client = settings or get_settings().http_client
    conf: dict[str, Any] = {"url": url}
    basic_auth("schema-registry", client)  # validates the form
    if client.schema_registry_user_info:
        conf["basic.auth.user.info"] = client.schema_registry_user_info
    ca = client.ca_for("schema-registry")
    if ca is not None:
        conf["ssl.ca.location"] = str(ca)
    return conf


def ksql_api_kwargs(settings: HttpClientSettings | None = None) -> dict[str, Any]:
    """ksql-python-ng's `KSQLAPI(url, **kwargs)` credentials (`api_key`/`secret` become Basic)."""
    auth = basic_auth("ksql", settings)
    return {} if auth is None else {"api_key": auth[0], "secret": auth[1]}
