"""The `_schemas` record formats (byte-exact with Confluent's) and the state they fold into,
including records only a Confluent registry writes (DELETE_SUBJECT, CLEAR_SUBJECT)."""

from __future__ import annotations

import json

from services.schema_registry.registry import Registry
from services.schema_registry.state import (
    RegistryState,
    SchemaVersion,
    config_key,
    decode,
    encode,
    mode_key,
    noop_key,
    schema_key,
    schema_value,
)


def test_keys_are_confluents_bytes() -> None:
    assert encode(schema_key("Kafka-key", 1)) == (
        b'{"keytype":"SCHEMA","subject":"Kafka-key","version":1,"magic":1}'
    )
    assert encode(config_key("MySchema")) == b'{"keytype":"CONFIG","subject":"MySchema","magic":0}'
    assert encode(config_key(None)) == b'{"keytype":"CONFIG","subject":null,"magic":0}'
    assert encode(mode_key(None)) == b'{"keytype":"MODE","subject":null,"magic":0}'
    assert encode(noop_key()) == b'{"keytype":"NOOP","magic":0}'
    assert encode(None) is None


def test_schema_value_is_confluents_shape() -> None:
    entry = SchemaVersion("Kafka-key", 1, 1, '"string"')
    assert encode(schema_value(entry)) == (
        b'{"subject":"Kafka-key","version":1,"id":1,"schema":"\\"string\\"","deleted":false}'
    )


def schema_record(subject: str, version: int, schema_id: int, schema: str = '"string"') -> tuple:
    value = {"subject": subject, "version": version, "id": schema_id, "schema": schema}
    return schema_key(subject, version), value


def test_confluent_written_log_folds_into_state() -> None:
    state = RegistryState()
    log = [
        schema_record("a", 1, 1),
        schema_record("a", 2, 2, '"int"'),
        schema_record("b", 1, 1),
        (config_key(None), {"compatibilityLevel": "FULL"}),
        (config_key("a"), {"compatibilityLevel": "NONE"}),
        ({"keytype": "DELETE_SUBJECT", "subject": "b", "magic": 0}, {"subject": "b", "version": 1}),
        (noop_key(), None),
        ({"keytype": "SOMETHING_NEWER", "magic": 0}, {"x": 1}),
    ]
    for key, value in log:
        state.apply(*(decode(encode(key)), decode(encode(value))))
    assert [e.version for e in state.live_versions("a")] == [1, 2]
    assert state.live_versions("b") == [] and state.all_versions("b")[0].deleted
    assert state.configs == {None: "FULL", "a": "NONE"}
    assert state.max_id == 2
    state.apply({"keytype": "CLEAR_SUBJECT", "subject": "b", "magic": 0}, {"subject": "b"})
    assert "b" not in state.subjects
    state.apply(config_key("a"), None)
    assert state.configs == {None: "FULL"}


def test_tombstones_forget_unused_ids() -> None:
    state = RegistryState()
    state.apply(*schema_record("a", 1, 7))
    state.apply(*schema_record("b", 1, 7))
    state.apply(schema_key("a", 1), None)
    assert 7 in state.schemas_by_id, "still used by b"
    state.apply(schema_key("b", 1), None)
    assert 7 not in state.schemas_by_id and not state.subjects


def test_registry_writes_replay_to_the_same_state() -> None:
    registry = Registry()
    schema = json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]})
    registry.register("s", {"schema": schema}, normalize=False)
    registry.register("t", {"schema": schema}, normalize=False)
    registry.put_config("s", {"compatibility": "FULL"})
    registry.delete_subject("t", permanent=False)
    registry.delete_subject("t", permanent=True)
    replayed = RegistryState()
    for key, value in registry.log.records:  # type: ignore[attr-defined]
        replayed.apply(decode(encode(key)), decode(encode(value)))
    assert replayed == registry.state
