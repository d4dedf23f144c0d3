"""EMF parsing: the contract's example line, the services' exporter's real output, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alarms.sample_metrics import synthetic_recording
from ops.alarm import Dimension, Metric
from ops.emf import EmfError, SeriesKey, parse_emf, read_emf

CONTRACT_LINE = (
    '{"_aws":{"Timestamp":1764220000000,"CloudWatchMetrics":[{"Namespace":"Custom/QIS",'
    '"Metrics":[{"Name":"IngestionLatency","Unit":"Milliseconds"}],"Dimensions":[["Environment",'
    '"Service","Route"]]}]},"Version":"1","otel.resource.service.name":"qis-api",'
    '"IngestionLatency":{"Values":[12.1,15.3],"Counts":[3.0,1.0],"Count":4,"Sum":52.0,'
    '"Max":16.0,"Min":11.0},"Environment":"local","Service":"api",'
    '"Route":"POST /v1/observations"}'
)
LATENCY = Metric(
    namespace="Custom/QIS",
    metric_name="IngestionLatency",
    dimensions=(
        Dimension(name="Environment", value="local"),
        Dimension(name="Service", value="api"),
        Dimension(name="Route", value="POST /v1/observations"),
    ),
)


def test_the_contract_example_line() -> None:
    recorded = parse_emf([CONTRACT_LINE])
    (sample,) = recorded.samples(LATENCY)
    assert sample.timestamp_ms == 1764220000000
    assert sample.values == (12.1, 15.3)
    assert sample.counts == (3.0, 1.0)
    assert (sample.sample_count, sample.total, sample.minimum, sample.maximum) == (4, 52, 11, 16)
    assert recorded.units[SeriesKey.of(LATENCY)] == "Milliseconds"


def test_dimension_order_does_not_matter_but_the_dimension_set_does() -> None:
    recorded = parse_emf([CONTRACT_LINE])
    reordered = Metric(
        namespace="Custom/QIS",
        metric_name="IngestionLatency",
        dimensions=tuple(reversed(LATENCY.dimensions)),
    )
    assert recorded.samples(reordered)
    only_service = Metric(
        namespace="Custom/QIS", metric_name="IngestionLatency", dimensions=LATENCY.dimensions[:2]
    )
    assert recorded.samples(only_service) == ()
    no_environment = Metric(
        namespace="Custom/QIS", metric_name="IngestionLatency", dimensions=LATENCY.dimensions[1:]
    )
    assert recorded.samples(no_environment) == ()


def test_numbers_arrays_and_several_dimension_sets() -> None:
    line = {
        "_aws": {
            "Timestamp": 1000,
            "CloudWatchMetrics": [
                {
                    "Namespace": "Custom/QIS",
                    "Metrics": [{"Name": "DeadLetterCount"}, {"Name": "ConsumerLag"}],
                    "Dimensions": [["Service", "Stage"], ["Service", "Topic"]],
                }
            ],
        },
        "DeadLetterCount": 3,
        "ConsumerLag": [10, 30],
        "Service": "worker",
        "Stage": "decode",
        "Topic": "qis.observations.v1",
    }
    recorded = parse_emf([json.dumps(line)])
    assert len(recorded.series) == 4
    staged = SeriesKey(
        "Custom/QIS", "DeadLetterCount", (("Service", "worker"), ("Stage", "decode"))
    )
    (letters,) = recorded.series[staged]
    assert letters.total == 3
    lag = SeriesKey(
        "Custom/QIS", "ConsumerLag", (("Service", "worker"), ("Topic", "qis.observations.v1"))
    )
    (sample,) = recorded.series[lag]
    assert (sample.sample_count, sample.total, sample.maximum) == (2, 40, 30)
    assert recorded.units[lag] == "None"


def test_log_lines_are_skipped_and_broken_lines_named(tmp_path: Path) -> None:
    recorded = parse_emf(["", '{"level": "info", "msg": "started"}', CONTRACT_LINE])
    assert (recorded.records, recorded.skipped_lines) == (1, 1)
    with pytest.raises(EmfError, match="line 2: not JSON"):
        parse_emf([CONTRACT_LINE, "{oops"])
    missing_value = CONTRACT_LINE.replace('"IngestionLatency":{', '"Other":{')
    with pytest.raises(EmfError, match="IngestionLatency has no value"):
        parse_emf([missing_value])
    path = tmp_path / "api.emf.jsonl"
    path.write_text(CONTRACT_LINE + "\nnot json\n")
    with pytest.raises(EmfError, match=r"api\.emf\.jsonl:2"):
        read_emf([path])


def test_the_exporters_output_parses_into_the_contract() -> None:
    """The synthetic recording is produced by the services' EMF exporter itself."""
    lines = synthetic_recording("healthy", minutes=2, requests_per_minute=100)
    first = json.loads(lines[0])
    assert set(first) >= {"_aws", "Version", "otel.resource.service.name"}
    recorded = parse_emf(lines)
    latency = recorded.samples(LATENCY)
    assert len(latency) == 2
    assert all(s.sample_count == sum(s.counts) for s in latency)
    names = {(k.name, tuple(n for n, _ in k.dimensions)) for k in recorded.series}
    assert ("IngestionLatency", ("Environment", "Route", "Service")) in names
    assert ("HttpRequests", ("Environment", "Route", "Service", "StatusClass")) in names
    assert ("ConsumerLag", ("Environment", "Service", "Topic")) in names
    assert ("QualityScoreBySeries", ("Environment", "Series", "Service")) in names
    assert all(isinstance(v, str) for k in recorded.series for _, v in k.dimensions)
