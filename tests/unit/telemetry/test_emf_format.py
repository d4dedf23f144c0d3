"""The EMF exporter writes the documents ADOT's `ConsoleEmfExporter` wrote.

`emf_adot_golden.jsonl` holds, one per line, the documents that
`aws-opentelemetry-distro` 0.21.0's exporter (with our metric names and without its
Application Signals dimensions, as `app.telemetry.metrics` configured it) made of
`metrics_data()` below; `app.telemetry.emf` replaced it and must keep making the same
documents from the same data: sums, gauges, explicit and exponential histograms (zero,
positive and negative buckets), dimensions, units, resource attributes, one document per
attribute set and timestamp.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from app.telemetry.metrics import StdoutEmfExporter

GOLDEN = Path(__file__).parent / "emf_adot_golden.jsonl"
T0 = 1_764_000_000_000_000_000
T1 = T0 + 60_000_000_000
BASE = {"Environment": "staging", "Service": "api"}
DELTA = AggregationTemporality.DELTA


def _sum(name: str, unit: str, points: list[tuple[dict[str, str], float, int]]) -> Metric:
    return Metric(
        name=name,
        description="",
        unit=unit,
        data=Sum(
            data_points=[
                NumberDataPoint(attributes=a, start_time_unix_nano=T0, time_unix_nano=t, value=v)
                for a, v, t in points
            ],
            aggregation_temporality=DELTA,
            is_monotonic=True,
        ),
    )


def metrics_data() -> MetricsData:
    route = {**BASE, "Route": "GET /v1/reference-data/{reference_data_id}"}
    sdk = ScopeMetrics(
        scope=InstrumentationScope("qis"),
        schema_url="",
        metrics=[
            _sum("httprequests", "Count", [({**route, "StatusClass": "2xx"}, 41, T1)]),
            _sum(
                "deadlettercount",
                "Count",
                [({**BASE, "Stage": "decode"}, 2, T1), ({**BASE, "Stage": "reconcile"}, 1, T1)],
            ),
            _sum("dataingestionrate", "Count", [(BASE, 300, T1)]),
            Metric(
                name="consumerlag",
                description="",
                unit="Count",
                data=Gauge(
                    data_points=[
                        NumberDataPoint(
                            attributes={**BASE, "Topic": "qis.observations.v1"},
                            start_time_unix_nano=T0,
                            time_unix_nano=T1,
                            value=7,
                        )
                    ]
                ),
            ),
            Metric(
                name="cachehitratio",
                description="",
                unit="1",
                data=Gauge(
                    data_points=[
                        NumberDataPoint(
                            attributes={**BASE, "Level": "L1"},
                            start_time_unix_nano=T0,
                            time_unix_nano=T1,
                            value=0.75,
                        )
                    ]
                ),
            ),
            Metric(
                name="publicationfreshness",
                description="snap to published",
                unit="s",
                data=Histogram(
                    data_points=[
                        HistogramDataPoint(
                            attributes=BASE,
                            start_time_unix_nano=T0,
                            time_unix_nano=T1,
                            count=3,
                            sum=2.5,
                            bucket_counts=[1, 2],
                            explicit_bounds=[1.0],
                            min=0.4,
                            max=1.2,
                        )
                    ],
                    aggregation_temporality=DELTA,
                ),
            ),
            Metric(
                name="qualityscoreaverage",
                description="",
                unit="1",
                data=ExponentialHistogram(
                    data_points=[
                        ExponentialHistogramDataPoint(
                            attributes=BASE,
                            start_time_unix_nano=T0,
                            time_unix_nano=T1,
                            count=6,
                            sum=1.2,
                            scale=3,
                            zero_count=1,
                            positive=Buckets(offset=-2, bucket_counts=[1, 0, 2]),
                            negative=Buckets(offset=1, bucket_counts=[1, 1]),
                            flags=0,
                            min=-1.5,
                            max=0.95,
                        )
                    ],
                    aggregation_temporality=DELTA,
                ),
            ),
        ],
    )
    distributions = ScopeMetrics(
        scope=InstrumentationScope("qis.distributions"),
        schema_url="",
        metrics=[
            Metric(
                name="HttpLatency",
                description="",
                unit="ms",
                data=ExponentialHistogram(
                    data_points=[
                        ExponentialHistogramDataPoint(
                            attributes=route,
                            start_time_unix_nano=T0,
                            time_unix_nano=T1 + 1_000_000,
                            count=41,
                            sum=123.0,
                            scale=8,
                            zero_count=0,
                            positive=Buckets(offset=300, bucket_counts=[30, 0, 0, 10, 1]),
                            negative=Buckets(offset=0, bucket_counts=[]),
                            flags=0,
                            min=2.25,
                            max=3.5,
                        )
                    ],
                    aggregation_temporality=DELTA,
                ),
            ),
            # An empty metric is skipped.
            Metric(
                name="IngestionLatency",
                description="",
                unit="ms",
                data=ExponentialHistogram(data_points=[], aggregation_temporality=DELTA),
            ),
        ],
    )
    resource = Resource(
        {"service.name": "qis-api", "deployment.environment": "staging", "k8s.pod.uid": "p-1"}
    )
    return MetricsData(
        resource_metrics=[
            ResourceMetrics(resource=resource, scope_metrics=[sdk, distributions], schema_url="")
        ]
    )


class _Collecting(StdoutEmfExporter):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def _export(self, log_event: dict[str, Any]) -> None:
        self.lines.append(log_event["message"])


def documents() -> list[dict[str, Any]]:
    exporter = _Collecting()
    exporter.export(metrics_data())
    return [json.loads(line) for line in exporter.lines]


def test_the_documents_are_adots() -> None:
    golden = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    assert documents() == golden


def test_the_golden_documents_cover_every_kind_of_point() -> None:
    golden = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    assert len(golden) == 7  # one per attribute set and timestamp
    by_name = {
        metric["Name"]: (doc, metric)
        for doc in golden
        for directive in doc["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    }
    quality, _ = by_name["QualityScoreAverage"]
    assert quality["QualityScoreAverage"]["Counts"] == [1.0, 2.0, 1.0, 1.0, 1.0]
    assert 0 in quality["QualityScoreAverage"]["Values"]
    assert by_name["PublicationFreshness"][1]["Unit"] == "Seconds"
    assert "Unit" not in by_name["CacheHitRatio"][1]
    assert "IngestionLatency" not in by_name
