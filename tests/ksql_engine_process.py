"""A KSQL engine in a process of its own, for tests that kill it with SIGKILL.

`python tests/ksql_engine_process.py SERVICE_ID STATEMENT...`: an engine with a command topic
(so a restart replays the statements and resumes the queries from their committed offsets and
state-store changelogs) and exactly-once queries; the statements run only on the first start
(when the command topic had nothing). Prints `ready` once started, then runs until killed.
"""

from __future__ import annotations

import sys
import time

from services.ksql_server.engine import Engine


def main() -> None:
    service_id, statements = sys.argv[1], sys.argv[2:]
    engine = Engine(
        service_id=service_id,
        properties={
            "auto.offset.reset": "earliest",
            "processing.guarantee": "exactly_once_v2",
        },
        processing_log=False,
    )
    if not engine.queries:
        for text in statements:
            engine.execute(text)
    print("ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
