"""A read model also runs under eventsourcing's own ProjectionRunner (as in bench/)."""

from __future__ import annotations

from eventsourcing.projection import ProjectionRunner

from commands.service import Shop
from eventstore.url import StoreURL
from projections.engine.postgres_recorder import PostgresReadModelRecorder
from projections.readmodels.catalogue import Catalogue
from tests.projections.support import World, opened


class LibraryCatalogue(Catalogue):
    name = "lib_catalogue"


class LibraryView(PostgresReadModelRecorder):
    table_prefix = "lib_"


def test_one_event_per_transaction_builds_the_same_catalogue(pg_url: str) -> None:
    with opened(pg_url) as (shop, read_side):
        World(shop).seed(10)
        read_side.start()
        assert read_side.wait_for("catalogue", shop.head(), timeout=10)
        # The library runner subscribes to the catalogue's topics only.
        last = max(
            n.id
            for n in shop.recorder.select_notifications(None, 10**6)
            if n.topic in Catalogue.topics
        )
        with ProjectionRunner(
            application_class=Shop,
            projection_class=LibraryCatalogue,
            view_class=LibraryView,
            env={**StoreURL.parse(pg_url).library_env(), "POSTGRES_POOL_SIZE": "2"},
        ) as runner:
            runner.wait(last, timeout=10)
            assert runner.projection.dump() == {
                "catalogue": read_side.catalogue.dump()["catalogue"]
            }
