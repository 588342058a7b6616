"""Waiting for a count to reach a target, with progress and a deadline.

`fraudstream run` waits for KSQL to fill its topics and for the scorer to catch up, and
`fraudstream train --wait-rows` (what docker compose's trainer runs) waits for the labelled
stream to hold enough rows: one loop for all of them, so they report and time out alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.common.errors import FraudstreamError

Say = Callable[[str], None]


def poll_until(
    count: Callable[[], int],
    expected: int,
    timeout: float,
    progress: Callable[[int], str],
    timed_out: Callable[[int], str],
    say: Say,
    alive: Callable[[], bool] = lambda: True,
    died: str = "",
    report_every_s: float = 5.0,
    interval_s: float = 0.25,
) -> int:
    """Block until `count()` reaches `expected`, saying `progress(n)` every `report_every_s`;
    raise with `timed_out(n)` after `timeout` seconds, or with `died` at once when `alive()`
    turns False. Returns the count reached."""
    started = time.monotonic()
    last_report = 0.0
    while (done := count()) < expected:
        if not alive():
            raise FraudstreamError(died, code="component_died")
        waited = time.monotonic() - started
        if waited > timeout:
            raise FraudstreamError(timed_out(done), code="timed_out")
        if waited - last_report >= report_every_s:
            say(progress(done))
            last_report = waited
        time.sleep(interval_s)
    return done
