"""The scorer acts only on announcements naming a registered, intact version; everything else
is ignored and counted, the current model stays; the watcher survives any error and retries a
version that was not loadable yet (half copied) with backoff.

Unit tests drive ModelManager with the real on-disk registry (no broker); the slow tests run the
scorer on the real broker, and the last one makes the attack through the KSQL server."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_scorer_support import (
    StubModel,
    make_records,
    offline_alert_ids,
    produce_records,
    save_model,
)

from services.model_registry.api import LATEST_FILE, MODEL_NAME, ModelAnnouncement
from services.model_registry.registry import (
    MANIFEST_FILE,
    MAX_ANNOUNCEMENT_BYTES,
    MODEL_FILE,
    THRESHOLD_FILE,
    ModelRegistry,
    announcement_to_json,
)
from services.scorer.models import MAX_WANTED, ModelManager, registry_loader
from services.scorer.scorer import Scorer, ScorerConfig


@dataclass(frozen=True)
class Published:
    """Two versions published in `home` (v1 is LATEST) and one in `elsewhere` (not ours)."""

    home: Path
    v1: str
    v2: str
    elsewhere: Path
    evil: str


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    home = tmp_path_factory.mktemp("home")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    v1 = save_model(home, seed=1)
    v2 = save_model(home, seed=2, make_latest=False)
    evil = save_model(elsewhere, seed=3)
    _set_threshold(elsewhere / evil, 1e30)  # would silence every alert
    return Published(home, v1, v2, elsewhere, evil)


@pytest.fixture
def models(published: Published, tmp_path: Path) -> Path:
    """A private copy of `home` to tamper with."""
    shutil.copytree(published.home, tmp_path / "models")
    return tmp_path / "models"


def _set_threshold(folder: Path, threshold: float) -> None:
    doc = json.loads((folder / THRESHOLD_FILE).read_text())
    (folder / THRESHOLD_FILE).write_text(json.dumps({**doc, "threshold": threshold}))


def _announcement(version: str, path: str = "/anywhere", digest: str | None = None) -> bytes:
    return announcement_to_json(
        ModelAnnouncement(MODEL_NAME, version, path, 1e30, "2026-01-01T00:00:00Z", digest)
    )


def _manager(models_dir: Path, **kwargs: Any) -> ModelManager:
    load, latest = registry_loader(models_dir)
    options: dict[str, Any] = {"models_topic": None, "poll_interval_s": 0.02, **kwargs}
    return ModelManager(load, latest, "latest", **options)


def _ignored(manager: ModelManager, reason: str) -> float:
    value = manager.metrics.registry.get_sample_value(
        "fraudstream_scorer_model_announcements_ignored_total", {"reason": reason}
    )
    return value or 0.0


def _retries(manager: ModelManager) -> float:
    value = manager.metrics.registry.get_sample_value("fraudstream_scorer_model_load_retries_total")
    return value or 0.0


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def malicious_announcements(published: Published, tampered: str) -> Iterator[tuple[str, bytes]]:
    """(reason it must be ignored for, the record's value): the attacks of issue #11;
    `tampered` names a registered version whose threshold was edited on disk."""
    outside = published.elsewhere / published.evil
    yield "bad_version", _announcement(str(outside), str(outside))
    yield "bad_version", _announcement(f"../{published.elsewhere.name}/{published.evil}")
    yield "bad_version", _announcement("..")
    yield "unknown_version", _announcement("20990101-000000-000000")
    yield "tampered", _announcement(tampered)
    yield "too_large", _announcement(published.v2, path="x" * MAX_ANNOUNCEMENT_BYTES)
    yield "not_json", b"\xff\xfe\x00{garbage"
    yield "bad_fields", b'{"model": "creditcardfraud-autoencoder", "version": ["v"]}'
    yield "other_model", _announcement(published.v2).replace(MODEL_NAME.encode(), b"other")


def test_malicious_announcements_are_ignored_counted_and_the_model_stays(
    published: Published, models: Path
) -> None:
    _set_threshold(models / published.v2, 1e30)
    manager = _manager(models, retry_initial_s=60)
    attacks = list(malicious_announcements(published, published.v2))
    for _reason, value in attacks:
        manager.on_announcement(value)
    assert manager.swap_if_ready() is None
    assert manager.version == published.v1
    assert manager.current.threshold < 1e6
    for reason, count in Counter(reason for reason, _ in attacks).items():
        assert _ignored(manager, reason) == count, reason


def test_an_announced_digest_must_match_too(published: Published, models: Path) -> None:
    manager = _manager(models, retry_initial_s=60)
    manager.on_announcement(_announcement(published.v2, digest="0" * 64))
    assert manager.swap_if_ready() is None and _ignored(manager, "tampered") == 1
    digest = ModelRegistry(models).manifest_digest(published.v2)
    manager.on_announcement(_announcement(published.v2, digest=digest))
    swapped = manager.swap_if_ready()
    assert swapped is not None and swapped.version == published.v2


def test_watcher_survives_non_utf8_latest_and_loads_a_later_version(
    published: Published, models: Path
) -> None:
    manager = _manager(models)
    manager.start()
    try:
        (models / LATEST_FILE).write_bytes(b"\xff\xfe\x00\x9c\x80 not a version")
        wait_for(lambda: _ignored(manager, "bad_latest") == 1)
        time.sleep(0.2)  # many more polls: counted once per new problem, not per poll
        assert _ignored(manager, "bad_latest") == 1
        assert manager._thread is not None and manager._thread.is_alive()
        assert manager.swap_if_ready() is None and manager.version == published.v1
        ModelRegistry(models).set_latest(published.v2)
        wait_for(lambda: manager._pending is not None)
        swapped = manager.swap_if_ready()
        assert swapped is not None and swapped.version == published.v2
    finally:
        manager.stop()


@pytest.mark.parametrize("copied_last", [MODEL_FILE, MANIFEST_FILE])
def test_a_half_copied_version_is_loaded_once_complete(
    copied_last: str, published: Published, tmp_path: Path
) -> None:
    """rsync of a version from the training host: the announcement can arrive before the
    copy is complete; the version must be loaded once it is, not blacklisted."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(published.home / published.v1, models / published.v1)
    ModelRegistry(models).set_latest(published.v1)
    source, target = published.home / published.v2, models / published.v2
    target.mkdir()
    for item in source.iterdir():
        if item.name != copied_last:
            shutil.copy(item, target / item.name)
    if copied_last == MODEL_FILE:  # half of it arrived
        (target / MODEL_FILE).write_bytes((source / MODEL_FILE).read_bytes()[:1000])
    manager = _manager(models, retry_initial_s=0.05, retry_max_s=0.2)
    manager.on_announcement(_announcement(published.v2))
    assert manager.swap_if_ready() is None
    manager.start()
    try:
        wait_for(lambda: _retries(manager) >= 2)
        assert manager.swap_if_ready() is None and manager.version == published.v1
        shutil.copy(source / copied_last, target / copied_last)
        wait_for(lambda: manager._pending is not None)
        swapped = manager.swap_if_ready()
        assert swapped is not None and swapped.version == published.v2
    finally:
        manager.stop()
    reason = "tampered" if copied_last == MODEL_FILE else "unverified"
    assert _ignored(manager, reason) == 1  # counted once, retries counted apart


class FlakyStore:
    """LATEST and loads that fail in every way an outside world can make them fail."""

    def __init__(self) -> None:
        self.latest_value: str | Exception = "v1"
        self.broken: set[str] = set()

    def load(self, version: str, digest: str | None = None, pinned: bool = False) -> StubModel:
        version = self.latest() or "v1" if version == "latest" else version
        if version in self.broken:
            raise MemoryError("TensorFlow ran out of memory")
        return StubModel(version)

    def latest(self) -> str | None:
        if isinstance(self.latest_value, Exception):
            raise self.latest_value
        return self.latest_value


class BrokenConsumer:
    def __init__(self) -> None:
        self.closed = False

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        time.sleep(0.01)
        raise RuntimeError("broker went away")

    def close(self) -> None:
        self.closed = True


def test_watcher_survives_any_error_and_recreates_its_consumer() -> None:
    store = FlakyStore()
    manager = ModelManager(
        store.load,
        store.latest,
        models_topic="t",
        poll_interval_s=0.01,
        retry_initial_s=0.01,
        retry_max_s=0.05,
    )
    consumers: list[BrokenConsumer] = []
    attempts = 0

    def new_consumer(_topic: str) -> BrokenConsumer:
        nonlocal attempts
        attempts += 1
        if attempts == 2:
            raise OSError("cannot connect")  # creating it fails once, then works again
        consumers.append(BrokenConsumer())
        return consumers[-1]

    manager._announcement_consumer = new_consumer  # type: ignore[assignment,method-assign]
    manager.start()
    try:
        store.latest_value = KeyError("weird")
        wait_for(lambda: len(consumers) >= 3)
        assert all(c.closed for c in consumers[:-1])
        store.broken.add("v2")
        store.latest_value = "v2"  # fails to load, retried with backoff
        wait_for(lambda: _retries(manager) >= 2)
        store.broken.clear()
        wait_for(lambda: manager._pending is not None)
        assert manager._thread is not None and manager._thread.is_alive()
    finally:
        manager.stop()
    errors = manager.metrics.registry.get_sample_value(
        "fraudstream_scorer_model_watcher_errors_total", {"kind": "RuntimeError"}
    )
    assert errors is not None and errors >= 2
    assert _ignored(manager, "load_failed") == 1 and _ignored(manager, "bad_latest") == 1
    swapped = manager.swap_if_ready()
    assert swapped is not None and swapped.version == "v2"


def test_a_flood_of_unknown_versions_keeps_bounded_state(
    published: Published, models: Path
) -> None:
    manager = _manager(models, retry_initial_s=60)
    for i in range(100):
        manager.on_announcement(_announcement(f"20990101-000000-{i:06d}"))
    assert len(manager._wanted) <= MAX_WANTED
    assert _ignored(manager, "unknown_version") == 100
    assert manager.version == published.v1


# ----------------------------------------------------------------------------------- slow
IGNORED = "fraudstream_scorer_model_announcements_ignored_total"


def _scorer(unique: str, models: Path, models_topic: str) -> Scorer:
    return Scorer(
        ScorerConfig(
            topic=f"t_trust_in_{unique}",
            alerts_topic=f"t_trust_alerts_{unique}",
            dlq_topic=f"t_trust_dlq_{unique}",
            group=f"trust-{unique}",
            models_topic=models_topic,
            from_beginning=True,
            models_dir=models,
            batch_size=250,
            batch_timeout_ms=50,
            model_poll_interval_s=0.2,
        )
    )


def _decode_alerts(topic: str, bootstrap: str, sr_url: str) -> list[dict[str, Any]]:
    from test_scorer_support import read_all

    from services.common.avro.codec import AvroDecoder
    from services.common.avro.schemas import registry_client

    decoder = AvroDecoder(registry_client(sr_url))
    return [decoder.decode(m.value()) for m in read_all(topic, bootstrap)]


def _produce(topic: str, values: list[bytes], bootstrap: str) -> None:
    from services.common.kafka import make_producer

    producer = make_producer(bootstrap)
    for value in values:
        producer.produce(topic, key=MODEL_NAME.encode(), value=value)
    assert producer.flush(15) == 0


@pytest.mark.slow
def test_scorer_on_the_broker_ignores_attacks_survives_bad_latest_and_retries_half_copies(
    published: Published,
    tmp_path: Path,
    kafka_bootstrap: str,
    schema_registry_url: str,
    unique: str,
) -> None:
    from services.common.kafka import ensure_topic

    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(published.home / published.v1, models / published.v1)
    ModelRegistry(models).set_latest(published.v1)
    tampered = "20260101-000000-7a3e4d"  # a registered version whose threshold was edited
    shutil.copytree(published.home / published.v2, models / tampered)
    (models / tampered / MANIFEST_FILE).write_text(
        (published.home / published.v2 / MANIFEST_FILE).read_text().replace(published.v2, tampered)
    )
    _set_threshold(models / tampered, 1e30)
    models_topic = f"t_trust_models_{unique}"
    ensure_topic(models_topic, bootstrap=kafka_bootstrap)
    records = make_records(6000, seed=41)
    scorer = _scorer(unique, models, models_topic)
    produce_records(scorer.config.topic, records[:2000], schema_registry_url, kafka_bootstrap)
    sample = scorer.metrics.registry.get_sample_value
    thread = threading.Thread(target=scorer.run)
    thread.start()
    try:
        wait_for(lambda: scorer.result.scored >= 2000, timeout=90)
        attacks = list(malicious_announcements(published, tampered))
        _produce(models_topic, [value for _, value in attacks], kafka_bootstrap)
        counts = Counter(reason for reason, _ in attacks)

        def all_counted() -> bool:
            return all(sample(IGNORED, {"reason": r}) == c for r, c in counts.items())

        wait_for(all_counted)
        produce_records(
            scorer.config.topic, records[2000:4000], schema_registry_url, kafka_bootstrap
        )
        wait_for(lambda: scorer.result.scored >= 4000, timeout=90)
        assert set(scorer.result.versions) == {published.v1}  # kept the model, kept scoring

        (models / LATEST_FILE).write_bytes(b"\xff\xfe\x00garbage")
        wait_for(lambda: sample(IGNORED, {"reason": "bad_latest"}) == 1)
        half = models / published.v2  # v2 is copied over from the training host: half there
        shutil.copytree(published.home / published.v2, half)
        full_model = (half / MODEL_FILE).read_bytes()
        (half / MODEL_FILE).write_bytes(full_model[:1000])
        _produce(models_topic, [_announcement(published.v2)], kafka_bootstrap)
        wait_for(lambda: sample(IGNORED, {"reason": "tampered"}) == 2)  # refused, not yet loaded
        time.sleep(1.0)
        assert sample("fraudstream_scorer_model_info", {"version": published.v1}) == 1
        (half / MODEL_FILE).write_bytes(full_model)  # the copy completes: no new announcement
        wait_for(lambda: sample("fraudstream_scorer_model_info", {"version": published.v2}) == 1)
        produce_records(scorer.config.topic, records[4000:], schema_registry_url, kafka_bootstrap)
        wait_for(lambda: scorer.result.scored >= len(records), timeout=90)
    finally:
        scorer.stop()
        thread.join(60)
    result = scorer.result
    assert set(result.versions) == {published.v1, published.v2}, result.versions
    switch = result.versions[published.v1]
    assert 4000 <= switch <= 6000 and result.scored == len(records)
    alerts = _decode_alerts(scorer.config.alerts_topic, kafka_bootstrap, schema_registry_url)
    got = {(a["ID"], a["MODEL_VERSION"]) for a in alerts}
    expected = {
        (i, published.v1) for i in offline_alert_ids(models, published.v1, records[:switch])
    } | {(i, published.v2) for i in offline_alert_ids(models, published.v2, records[switch:])}
    assert got == expected and len(expected) > 100  # the attacks silenced nothing


KSQL_JSON = "application/vnd.ksql.v1+json"


def _ksql(url: str, statement: str) -> Any:
    response = httpx.post(
        f"{url}/ksql",
        content=json.dumps({"ksql": statement, "streamsProperties": {}}),
        headers={"Content-Type": KSQL_JSON, "Accept": KSQL_JSON},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_the_ksql_attack_on_the_models_topic_is_ignored(
    published: Published,
    tmp_path: Path,
    kafka_bootstrap: str,
    schema_registry_url: str,
    ksql_url: str,
    unique: str,
) -> None:
    """Issue #11's attack: whoever can reach the KSQL server creates a stream over
    `fraudstream_models` and INSERTs an announcement of a model with an absurd threshold."""
    from services.common.kafka import ensure_topic

    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(published.home / published.v1, models / published.v1)
    ModelRegistry(models).set_latest(published.v1)
    models_topic = f"t_trust_ksql_models_{unique}"
    ensure_topic(models_topic, bootstrap=kafka_bootstrap)
    records = make_records(3000, seed=43)
    scorer = _scorer(unique, models, models_topic)
    produce_records(scorer.config.topic, records[:1000], schema_registry_url, kafka_bootstrap)
    sample = scorer.metrics.registry.get_sample_value
    stream = f"EVIL_MODELS_{unique}".upper()
    thread = threading.Thread(target=scorer.run)
    thread.start()
    try:
        wait_for(lambda: scorer.result.scored >= 1000, timeout=90)
        _ksql(
            ksql_url,
            f"CREATE STREAM {stream} (`model` VARCHAR, `version` VARCHAR, `path` VARCHAR, "
            f"`threshold` DOUBLE, `created_at` VARCHAR) "
            f"WITH (kafka_topic='{models_topic}', value_format='JSON');",
        )
        outside = str(published.elsewhere / published.evil)
        evil_versions = [outside, f"../{published.elsewhere.name}/{published.evil}", published.evil]
        for version in evil_versions:
            _ksql(
                ksql_url,
                f"INSERT INTO {stream} (`model`, `version`, `path`, `threshold`, `created_at`) "
                f"VALUES ('{MODEL_NAME}', '{version}', '{outside}', 1e30, '2026-01-01');",
            )
        wait_for(lambda: sample(IGNORED, {"reason": "bad_version"}) == 2)
        wait_for(lambda: sample(IGNORED, {"reason": "unknown_version"}) == 1)
        produce_records(scorer.config.topic, records[1000:], schema_registry_url, kafka_bootstrap)
        wait_for(lambda: scorer.result.scored >= len(records), timeout=90)
        assert sample("fraudstream_scorer_model_info", {"version": published.v1}) == 1
    finally:
        scorer.stop()
        thread.join(60)
        _ksql(ksql_url, f"DROP STREAM IF EXISTS {stream};")
    assert set(scorer.result.versions) == {published.v1}
    alerts = _decode_alerts(scorer.config.alerts_topic, kafka_bootstrap, schema_registry_url)
    expected = offline_alert_ids(models, published.v1, records)
    assert {a["ID"] for a in alerts} == expected and len(expected) > 50
    assert {a["MODEL_VERSION"] for a in alerts} == {published.v1}
