"""The services: what the API does, over typed requests, knowing nothing of HTTP.

``Services`` is the typed container the app builds once, in its lifespan, and every
route (fast path or FastAPI) calls into.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..auth import ApiKeys
from ..config import Settings
from ..observability import Metrics
from ..storage.contract import HistoryStore
from .history import HistoryService
from .hub import Hub
from .items import ItemsService
from .leases import LeaseService

__all__ = ["HistoryService", "Hub", "ItemsService", "LeaseService", "Services"]


@dataclass(frozen=True, slots=True)
class Services:
    """Settings, keys, metrics, the open store, the follow hub and the services on them."""

    settings: Settings
    api_keys: ApiKeys
    metrics: Metrics
    store: HistoryStore
    hub: Hub
    items: ItemsService
    history: HistoryService
    leases: LeaseService

    @classmethod
    def build(
        cls, settings: Settings, api_keys: ApiKeys, metrics: Metrics, store: HistoryStore
    ) -> Services:
        # The backend's own change feed (PostgreSQL) delivers every replica's writes;
        # without one (SQLite) the services publish their own.
        hub = Hub(
            max_streams=settings.max_follow_streams,
            max_per_tenant=settings.max_follow_streams_per_tenant,
            local=True,
        )
        feed = store.change_feed(hub)
        if feed is not None:
            hub.local = False
            hub.feed = feed
        history = HistoryService(store, settings, metrics, hub)
        leases = LeaseService(store, settings, hub)
        return cls(settings, api_keys, metrics, store, hub, history.items, history, leases)
