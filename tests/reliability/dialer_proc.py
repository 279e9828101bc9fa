"""A dialer process for the kill-and-restart test (``python -m tests.reliability.dialer_proc``).

Arguments: the database URL, the simulator's REST base URL and its account SID.
It dials on the real clock (calling window open all day, one attempt per case)
until killed, or until nothing is left to dial.
"""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime

from twilio.rest import Client

from ivr.dialer import Dialer
from minping.config import load_config
from minping.db import Database
from minping.settings import SIMULATOR_AUTH_TOKEN, SIMULATOR_FROM_NUMBER
from tests.reliability.harness import PUBLIC_URL, open_all_day

CALLS_PER_SECOND = 40.0


def main(url: str, api_base: str, account_sid: str) -> int:
    cfg = open_all_day(load_config(), max_attempts=1, calls_per_second=CALLS_PER_SECOND)
    client = Client(account_sid, SIMULATOR_AUTH_TOKEN)
    client.api.base_url = api_base.rstrip("/")
    db = Database(url)
    dialer = Dialer(db, cfg, client, public_url=PUBLIC_URL, from_number=SIMULATOR_FROM_NUMBER,
                    now=lambda: datetime.now(UTC), name=f"proc-{sys.argv[-1]}")
    dialer.run(threading.Event(), max_wait=0.2, until_done=True)
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
