"""Run by the e2e tests in a subprocess: a real sentry-sdk sending through the POP relay.

Prints the ids of what it sent as JSON.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import sentry_sdk

sent: dict[str, str] = {}


def remember_transaction(event: Any, hint: Any) -> Any:
    sent["transaction"] = event["event_id"]
    return event


def main(dsn: str) -> None:
    sentry_sdk.init(
        dsn=dsn,
        traces_sample_rate=1.0,
        default_integrations=False,
        before_send_transaction=remember_transaction,
        release="e2e@1.0.0",
        environment="e2e",
    )
    try:
        raise ZeroDivisionError("e2e division by zero")
    except ZeroDivisionError:
        event_id = sentry_sdk.capture_exception()
    assert event_id is not None
    sent["error"] = event_id
    with (
        sentry_sdk.start_transaction(name="e2e-transaction", op="test"),
        sentry_sdk.start_span(op="db", name="SELECT 1"),
    ):
        pass
    sentry_sdk.flush(timeout=10)
    print(json.dumps(sent))


if __name__ == "__main__":
    main(sys.argv[1])
