"""Observability: Prometheus metrics and structured JSON logs.

Metrics live in a registry of the app's own (``app.state.metrics``), so that two apps
in one process (tests) count apart. What they count:

- ``eventshop_http_requests_total{method,route,status}`` and
  ``eventshop_http_request_duration_seconds{method,route}``: every request, labelled
  by its route *template* (``/api/carts/{cart_id}``), never by its raw path;
- ``eventshop_commands_total{command,outcome}`` (ok, replayed, refused, conflict,
  error) and ``eventshop_command_retries_total{command}``, told by the service
  (:class:`commands.service.CommandObserver`);
- ``eventshop_event_log_head`` and, per read model, ``eventshop_projection_position``,
  ``eventshop_projection_lag_events``, ``eventshop_projection_events_per_second`` and
  ``eventshop_projection_parked_events`` (events its handlers failed on, parked),
  read at scrape time from the store and from ``app.state.read_side`` (anything whose
  ``status()`` lists rows with ``name``, ``position``, ``lag``, ``events_per_second``),
  so that they are never stale and the read side needs to push nothing;
- per outbound channel of the integration events (``channel`` ``jetstream`` or
  ``webhook``, ``subscription`` the webhook's id or empty), from
  ``app.state.deliveries``: ``eventshop_delivery_position``,
  ``eventshop_delivery_lag_events``, ``eventshop_delivery_lag_seconds``,
  ``eventshop_delivery_parked``, ``eventshop_delivery_retrying``,
  ``eventshop_delivery_last_success_timestamp_seconds`` and
  ``..._last_failure_timestamp_seconds`` (Unix time; absent until there was one) and
  ``eventshop_delivery_state{state}`` (1 for the current state), read at scrape time too.

Logs are one JSON object per line: ``timestamp``, ``level``, ``logger``, ``message``,
``request_id`` (the ``X-Request-ID`` of the request being served, null outside one),
plus whatever ``extra`` a call gives. ``eventshop serve`` sets them up
(:func:`configure_logging`); each request also leaves one access-log line (written,
with the request's metrics, by the middleware in front of the app: api/edge.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from commands.service import Shop
from eventstore.causes import current_cause

log = logging.getLogger("eventshop.observability")
access_log = logging.getLogger("eventshop.access")

# The route label of a request that matched no route: raw paths would explode the series.
UNMATCHED = "unmatched"


class Metrics:
    """The app's metrics; also the service's :class:`~commands.service.CommandObserver`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "eventshop_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "eventshop_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer",
            ["method", "route"],
            registry=self.registry,
        )
        self.commands = Counter(
            "eventshop_commands",
            "Commands run by the service, by outcome",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.retries = Counter(
            "eventshop_command_retries",
            "Commands run again after losing an optimistic-concurrency race",
            ["command"],
            registry=self.registry,
        )
        # The labelled children each request updates, by (method, route, status): looked
        # up once (``labels()`` takes a lock and checks its arguments each time).
        self._answered: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def command_retried(self, command: str) -> None:
        self.retries.labels(command).inc()

    def command_finished(self, command: str, outcome: str) -> None:
        self.commands.labels(command, outcome).inc()

    def request_answered(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._answered.get((method, route, status))
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._answered[(method, route, status)] = children
        count, latency = children
        count.inc()
        latency.observe(seconds)

    def watch(self, status: Callable[[], Iterable[Metric]]) -> None:
        """Add gauges read at scrape time from ``status`` (which yields metric families)."""
        self.registry.register(_Scraped(status))


class _Scraped(Collector):
    """A collector that asks a function for its metrics at each scrape."""

    def __init__(self, status: Callable[[], Iterable[Metric]]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self.status()
        except Exception:
            # A scrape must answer even when the store or a read model does not.
            log.exception("a metrics source failed during a scrape")

    def describe(self) -> list[Metric]:
        # Nothing to declare up front: the families are only known by asking.
        return []


def store_metrics(app: FastAPI) -> Iterator[Metric]:
    """The log head, and each read model's position, lag, throughput and parked events."""
    shop: Shop = app.state.shop
    head = GaugeMetricFamily("eventshop_event_log_head", "Position of the last stored event")
    head.add_metric([], shop.head())
    yield head
    read_side = getattr(app.state, "read_side", None)
    if read_side is None:
        return
    families = {
        "position": GaugeMetricFamily(
            "eventshop_projection_position",
            "Last log position a read model applied",
            labels=["projection"],
        ),
        "lag": GaugeMetricFamily(
            "eventshop_projection_lag_events",
            "Events stored but not yet applied to a read model",
            labels=["projection"],
        ),
        "events_per_second": GaugeMetricFamily(
            "eventshop_projection_events_per_second",
            "Events a read model applied per second, recently",
            labels=["projection"],
        ),
        "parked": GaugeMetricFamily(
            "eventshop_projection_parked_events",
            "Events a read model's handlers failed on, parked until retried or skipped",
            labels=["projection"],
        ),
    }
    for row in read_side.status():
        for field, family in families.items():
            family.add_metric([str(row["name"])], float(row.get(field) or 0))
    yield from families.values()


_DELIVERY_GAUGES = {
    "position": "Last log position an outbound channel has passed",
    "lag_events": "Events stored but not yet passed by an outbound channel",
    "lag_seconds": "Age of the oldest event an outbound channel has not passed yet",
    "parked": "Deliveries given up after their last attempt, until redelivered",
    "retrying": "Deliveries being tried again now",
}
_DELIVERY_TIMES = {
    "last_success_at": ("last_success_timestamp_seconds", "Time of the last success"),
    "last_failure_at": ("last_failure_timestamp_seconds", "Time of the last failed attempt"),
}


def delivery_metrics(app: FastAPI) -> Iterator[Metric]:
    """Each outbound channel's position, lag, parked and retried deliveries, last success
    and failure, and state (``projections/deliveries.py``)."""
    deliveries = getattr(app.state, "deliveries", None)
    if deliveries is None:
        return
    labels = ["channel", "subscription"]
    gauges = {
        field: GaugeMetricFamily(f"eventshop_delivery_{field}", text, labels=labels)
        for field, text in _DELIVERY_GAUGES.items()
    }
    times = {
        field: GaugeMetricFamily(f"eventshop_delivery_{name}", text, labels=labels)
        for field, (name, text) in _DELIVERY_TIMES.items()
    }
    state = GaugeMetricFamily(
        "eventshop_delivery_state",
        "1 for an outbound channel's current state",
        labels=[*labels, "state"],
    )
    for channel in deliveries.status():
        row = channel.as_dict()
        key = [channel.channel, channel.subscription_id or ""]
        for field, family in gauges.items():
            family.add_metric(key, float(row[field]))
        for field, family in times.items():
            if row[field] is not None:
                family.add_metric(key, datetime.fromisoformat(row[field]).timestamp())
        state.add_metric([*key, channel.state], 1.0)
    yield from gauges.values()
    yield from times.values()
    yield state


def install(app: FastAPI, shop: Shop) -> Metrics:
    """Give ``app`` its metrics and let ``shop`` report to them; the requests' metrics are
    counted by the middleware in front of the app (api/edge.py), which is given them."""
    metrics = Metrics()
    app.state.metrics = metrics
    metrics.watch(lambda: store_metrics(app))
    metrics.watch(lambda: delivery_metrics(app))
    shop.observers.append(metrics)
    return metrics


# --- logs ---------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Stamp each record with the id of the request being served (``request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            # The request-id middleware makes it the correlation id of the request's
            # unit of work (eventstore/causes.py), which follows it into worker threads.
            record.request_id = current_cause().correlation_id
        return True


class DuplicateErrorFilter(logging.Filter):
    """Drop the server's own report of an error the app already logged with its request id.

    Starlette re-raises an unexpected error after answering 500, and uvicorn logs it
    again, outside any request: the same traceback without the id that finds it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name.startswith("uvicorn")
            and str(record.msg).startswith("Exception in ASGI application")
        )


def json_formatter() -> JsonFormatter:
    """One JSON object per line: timestamp, level, logger, message, request_id, extras."""
    return JsonFormatter(
        "{levelname}{name}{message}{request_id}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        # Uvicorn's copy of its message with terminal colours is noise in a log store.
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        timestamp=True,
    )


def configure_logging(level: str = "INFO", stream: Any = None) -> logging.Handler:
    """Send every log record (ours, uvicorn's, the libraries') as JSON lines to stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(DuplicateErrorFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # Uvicorn's own handlers would print plain text; let its records reach ours.
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        # A level left on them by an earlier uvicorn.Config would hide their records.
        logger.setLevel(logging.NOTSET)
    return handler
