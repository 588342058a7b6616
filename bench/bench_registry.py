"""Schema Registry benchmark: registrations/s and lookups/s, against the HTTP floor.

Starts a private registry instance on a fresh storage topic (so the shared `_schemas` stays
clean), then measures, sequentially over one keep-alive connection:

- registrations/s: new distinct schemas (each is a Kafka transaction, read back before answering);
- lookups/s: `POST /subjects/{s}` and `GET /schemas/ids/{id}` of registered schemas (served from
  the registry's in-memory state, bypassing the client's cache);
- client-cached lookups/s: `SchemaRegistryClient.get_schema` as serializers call it;
- the floor: `GET /`, an empty request through the same HTTP stack.

The last line gives the ratio of lookups/s to the floor (how much of a lookup is registry work)
and of registrations/s to lookups/s.
Run: `.venv/bin/python bench/bench_registry.py` or `fraudstream bench registry`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: E402

from services.common.errors import FraudstreamError  # noqa: E402
from services.common.kafka import delete_topics, wait_for_broker  # noqa: E402

REGISTRATIONS = int(os.environ.get("BENCH_REGISTRY_REGISTRATIONS", "300"))
LOOKUPS = int(os.environ.get("BENCH_REGISTRY_LOOKUPS", "2000"))


def schema_text(i: int) -> str:
    fields = [
        {"name": "id", "type": "long"},
        {"name": f"f{i}", "type": ["null", "double"], "default": None},
    ]
    return json.dumps(
        {"type": "record", "name": f"Bench{i}", "namespace": "bench", "fields": fields}
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_instance(topic: str, group: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "services.cli",
        "registry",
        "serve",
        "--port",
        str(port),
        "--topic",
        topic,
        "--group",
        group,
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FraudstreamError("the registry instance exited during start-up")
        try:
            if httpx.get(url + "/", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise FraudstreamError("the registry instance did not become healthy within 60s")


def rate(count: int, action: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for i in range(count):
        action(i)
    return count / (time.perf_counter() - started)


def main() -> None:
    wait_for_broker(timeout=30)
    unique = uuid.uuid4().hex[:8]
    topic = f"_schemas_bench_{unique}"
    proc, url = start_instance(topic, f"registry-bench-{unique}")
    try:
        http = httpx.Client(
            base_url=url, headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}
        )

        def register(i: int) -> None:
            body = {"schema": schema_text(i)}
            http.post(f"/subjects/bench-{i}/versions", json=body).raise_for_status()

        ids = {}
        reg_rate = rate(REGISTRATIONS, register)
        for i in range(REGISTRATIONS):
            ids[i] = http.post(f"/subjects/bench-{i}", json={"schema": schema_text(i)}).json()["id"]

        def lookup(i: int) -> None:
            k = i % REGISTRATIONS
            http.post(f"/subjects/bench-{k}", json={"schema": schema_text(k)}).raise_for_status()

        def by_id(i: int) -> None:
            http.get(f"/schemas/ids/{ids[i % REGISTRATIONS]}").raise_for_status()

        def floor(i: int) -> None:
            http.get("/").raise_for_status()

        client = SchemaRegistryClient({"url": url})

        def cached(i: int) -> None:
            client.get_schema(ids[i % REGISTRATIONS])

        rate(LOOKUPS // 4, floor)  # warm-up: connection, code paths
        floor_rate = rate(LOOKUPS, floor)
        lookup_rate = rate(LOOKUPS, lookup)
        id_rate = rate(LOOKUPS, by_id)
        cached_rate = rate(LOOKUPS * 10, cached)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        delete_topics([topic])

    print(f"{'operation':<42}{'per second':>12}")
    print(f"{'register a new schema (Kafka transaction)':<42}{reg_rate:>12,.0f}")
    print(f"{'look up schema in subject (POST)':<42}{lookup_rate:>12,.0f}")
    print(f"{'get schema by id (GET)':<42}{id_rate:>12,.0f}")
    print(f"{'client-cached get_schema':<42}{cached_rate:>12,.0f}")
    print(f"{'baseline: empty request GET /':<42}{floor_rate:>12,.0f}")
    print(
        f"ratio: lookups/s / floor = {lookup_rate / floor_rate:.2f}x, "
        f"get-by-id/s / floor = {id_rate / floor_rate:.2f}x, "
        f"registrations/s / lookups/s = {reg_rate / lookup_rate:.2f}x"
    )


if __name__ == "__main__":
    main()
