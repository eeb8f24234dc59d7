"""``python -m projections URL``: a projection worker, stopped by SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

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
    run_worker(
        StoreURL.parse(args.url),
        stop,
        prefix=args.prefix,
        batch_size=args.batch_size,
        worker_id=args.worker_id,
    )


if __name__ == "__main__":
    main()
