"""``python -m projections URL``: a projection worker, stopped by SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from eventstore import personal
from eventstore.keys import KeyTable
from eventstore.personal import KeyRing
from eventstore.url import StoreURL
from projections.readside import run_worker


def main() -> None:
    parser = argparse.ArgumentParser(description="Feed eventshop's read models from its log.")
    parser.add_argument("url", help="the event store: sqlite:///path or postgresql://...")
    parser.add_argument("--prefix", default="", help="table prefix of the read models")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--worker-id", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    store = StoreURL.parse(args.url)
    # The master key as `eventshop worker` finds it (its setting, else var/).
    master = personal.master_key_at(
        os.environ.get("EVENTSHOP_PERSONAL_DATA_MASTER_KEY"),
        Path(os.environ.get("EVENTSHOP_VAR_DIR", "var")),
    )
    keys = KeyRing(KeyTable.for_store(store), master)
    try:
        run_worker(
            store,
            stop,
            prefix=args.prefix,
            batch_size=args.batch_size,
            worker_id=args.worker_id,
            keys=keys,
        )
    finally:
        keys.close()


if __name__ == "__main__":
    main()
