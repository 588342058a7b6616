"""Small segments for the group and transaction coordinators' logs, so a restart replays little.

Kafka creates `__consumer_offsets` and `__transaction_state` with 100 MB segments, and its log
cleaner never compacts the active segment. On a one-node broker that commits a few hundred
transactions a second only during tests and benches, those logs never reach 100 MB, so they are
never compacted: every restart replays every offset commit ever written (≈ 700,000 records on
a stack that had run the test suite a few times), and Kafka 4.1's group coordinator keeps a weak
reference for each timeline map each replayed commit creates (`SnapshotRegistry`, scrubbed only
per 10,000 registrations): 42 MB of a 128 MB live heap, growing with every test run. With 4 MiB
segments the cleaner compacts them as they go: the same broker replayed ≈ 1,500 records in
0.4 s instead of 6.5 s and kept 71 MB live. (One exactly-once stage's latency was the same
either way: docs/latency.md, eighth pass.)

A data directory made before this setting keeps the topic's old `segment.bytes` (the broker
property only applies when the topic is created), so `shrink_segments` sets it on the topics
themselves after every start.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from services.common.kafka import make_admin

log = logging.getLogger("fraudstream.broker")

SEGMENT_BYTES = 4 * 1024 * 1024
# the topic each coordinator writes, and the broker property it is created with
TOPICS = {
    "__consumer_offsets": "offsets.topic.segment.bytes",
    "__transaction_state": "transaction.state.log.segment.bytes",
}


def server_properties() -> str:
    """Broker properties for a data directory whose coordinator topics are not created yet."""
    return "".join(f"{prop}={SEGMENT_BYTES}\n" for prop in TOPICS.values())


def shrink_segments(
    bootstrap: str, admin_config: Mapping[str, Any], timeout: float = 10.0
) -> list[str]:
    """Set `segment.bytes` on the coordinator topics that exist, as the broker's admin
    (`admin_config`: empty for PLAINTEXT); returns the ones set.

    A topic not created yet (a fresh broker: the coordinators create theirs on first use, with
    the broker property) is skipped. Setting an equal value again is harmless, so this is not
    conditional on what the topic has now."""
    admin = make_admin(bootstrap, **admin_config)
    present = set(admin.list_topics(timeout=timeout).topics)
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            topic,
            incremental_configs=[
                ConfigEntry(
                    "segment.bytes",
                    str(SEGMENT_BYTES),
                    incremental_operation=AlterConfigOpType.SET,
                )
            ],
        )
        for topic in TOPICS
        if topic in present
    ]
    if not resources:
        return []
    done = []
    for resource, future in admin.incremental_alter_configs(
        resources, request_timeout=timeout
    ).items():
        try:
            future.result()
        except KafkaException as exc:  # the broker serves all the same: say so, do not fail
            log.warning("could not set segment.bytes on %s: %s", resource.name, exc)
            continue
        done.append(resource.name)
    return sorted(done)
