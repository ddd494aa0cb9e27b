"""Prometheus metrics at ``/metrics`` (prometheus_client).

Two sources, so the figures hold however many processes and machines serve:
- The service's state, read from Redis at each scrape: jobs by kind and status and the seconds
  they spent queued and running (counted by the scripts that move a job, in every API and
  worker process: ser.service.jobs), the waiting messages of each queue, the worker processes
  online and warm per queue, and the current model.
- This API's HTTP requests by route: counted in each gunicorn process; with
  ``PROMETHEUS_MULTIPROC_DIR`` set (``ser api`` sets it under $SER_STATE_DIR) every process
  writes its figures there and a scrape of any one pools them all.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from api.openapi import operation
from api.warmup import ENVIRON_FLAG as REHEARSAL_FLAG
from ser.contract import QUEUES
from ser.service.heartbeats import heartbeats, readiness

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ServiceCollector:
    """The service's state from Redis, collected at scrape time."""

    def __init__(self, service) -> None:
        self.service = service

    def collect(self):
        s = self.service
        counts, hist = s.jobs.metrics()
        jobs = CounterMetricFamily(
            "ser_jobs", "Job transitions, by kind and the status entered", labels=["kind", "status"]
        )
        for (kind, status), n in sorted(counts.items()):
            jobs.add_metric([kind, status], n)
        yield jobs
        seconds = HistogramMetricFamily(
            "ser_job_duration_seconds",
            "Seconds a job spent queued (creation to first start) and running (start to end)",
            labels=["kind", "phase"],
        )
        for (kind, phase), entry in sorted(hist.items()):
            buckets = sorted(
                ((le, n) for le, n in entry["buckets"].items() if le != "+Inf"),
                key=lambda item: float(item[0]),
            )
            buckets.append(("+Inf", entry["buckets"].get("+Inf", entry["count"])))
            seconds.add_metric([kind, phase], buckets, entry["sum"])
        yield seconds
        depth = GaugeMetricFamily("ser_queue_depth", "Messages waiting", labels=["queue"])
        for queue in QUEUES:
            depth.add_metric([queue], s.redis.llen(queue))
        yield depth
        nodes = heartbeats(s.redis, s.settings.key_prefix)
        workers = GaugeMetricFamily(
            "ser_workers", "Worker processes online, by queue consumed", labels=["queue"]
        )
        for queue in QUEUES:
            online = [n for n in nodes if queue in (n.get("queues") or [])]
            workers.add_metric([queue], sum(int(n.get("concurrency") or 1) for n in online))
        yield workers
        state = readiness(s.redis, s.settings.key_prefix, QUEUES)
        warm = GaugeMetricFamily(
            "ser_workers_warm", "Worker processes warm (ready), by queue", labels=["queue"]
        )
        for queue, n in state["queues"].items():
            warm.add_metric([queue], n)
        yield warm
        yield GaugeMetricFamily("ser_ready", "1 when the service is ready", value=state["ready"])
        model = GaugeMetricFamily("ser_model_info", "The current model", labels=["version"])
        current = s.registry.current()
        if current is not None:
            model.add_metric([current], 1)
        yield model


def install(app: Flask) -> None:
    """Count this app's requests and serve ``/metrics`` (unless SER_METRICS is false)."""
    service = app.extensions["ser"]
    if not service.settings.metrics:
        return
    own = CollectorRegistry(auto_describe=True)
    requests_total = Counter(
        "ser_http_requests",
        "HTTP requests answered, by method, route and status",
        ["method", "route", "status"],
        registry=own,
    )
    latency = Histogram(
        "ser_http_request_duration_seconds",
        "Seconds to answer an HTTP request, by method and route",
        ["method", "route"],
        buckets=HTTP_BUCKETS,
        registry=own,
    )

    @app.before_request
    def _start() -> None:
        g.ser_started = time.perf_counter()

    @app.after_request
    def _count(response):
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if request.environ.get(REHEARSAL_FLAG):  # api.warmup: its series made (at 0), not counted
            requests_total.labels(request.method, route, str(response.status_code))
            latency.labels(request.method, route)
        elif route != "/metrics":
            requests_total.labels(request.method, route, str(response.status_code)).inc()
            started = g.get("ser_started")
            if started is not None:
                latency.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    @operation(
        "get",
        "Prometheus metrics: jobs, their durations, queues, workers, the model, HTTP requests",
        responses={200: ({"text/plain": {"type": "string"}}, "the Prometheus text format")},
    )
    def metrics():
        scrape = CollectorRegistry(auto_describe=True)
        scrape.register(ServiceCollector(service))
        body = generate_latest(scrape)
        if os.environ.get(MULTIPROC_ENV):  # every gunicorn process's HTTP figures, pooled
            pooled = CollectorRegistry()
            multiprocess.MultiProcessCollector(pooled)
            body += generate_latest(pooled)
        else:
            body += generate_latest(own)
        return Response(body, mimetype=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "meta.metrics", metrics, methods=["GET"])
