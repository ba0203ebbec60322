"""Prometheus metrics of the service (prometheus-client): requests and latency per route, events
stored and applied, the active model version, the index size. With several worker processes,
`PROMETHEUS_MULTIPROC_DIR` (set by `recstack serve --workers N`) makes /metrics add them up."""

from __future__ import annotations

import os
from typing import ClassVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """One set of metrics per process (`Metrics.get()`)."""

    _instance: ClassVar[Metrics | None] = None

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        r = self.registry
        self.requests = Counter("recstack_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram("recstack_request_seconds", "request latency", ["route"], buckets=BUCKETS,
                                 registry=r)
        self.events_stored = Counter("recstack_events_stored_total", "events stored by this service", registry=r)
        self.events_applied = Counter("recstack_events_applied_total", "stored events applied online", registry=r)
        self.model_version = Gauge("recstack_model_version", "active model version (0: a plain model folder)",
                                   registry=r, multiprocess_mode="livemax")
        self.index_size = Gauge("recstack_index_items", "items in the ANN index", registry=r,
                                multiprocess_mode="livemax")

    @classmethod
    def get(cls) -> Metrics:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # looking up labelled children costs more than counting: once per key
            children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                              self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def model_loaded(self, version: int | None, index_items: int) -> None:
        self.model_version.set(version or 0)
        self.index_size.set(index_items)

    def render(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
