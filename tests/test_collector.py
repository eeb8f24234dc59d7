"""The garbage collector's tuning for server processes (eventshop/collector.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_server_app
from eventshop import collector


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


def test_the_app_eventshop_serve_runs_tunes_the_collector_and_settles_once_started(
    restored: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTSHOP_DATABASE_URL", f"sqlite:///{tmp_path / 'shop.db'}")
    monkeypatch.setenv("EVENTSHOP_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("EVENTSHOP_JWT_SECRET", "a-secret-of-the-collector-test-0123456789")
    app = create_server_app()
    assert gc.get_threshold() == collector.THRESHOLDS
    assert gc.get_freeze_count() == 0
    with TestClient(app) as client:
        # Started: what it holds is out of the collector's sight.
        assert gc.get_freeze_count() > 10_000
        assert client.get("/health/live").status_code == 200
