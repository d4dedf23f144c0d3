"""Settings come from QIS_* variables; unknown ones fail loudly with their name."""

from __future__ import annotations

import pytest

from app.settings import Settings, SettingsError, load_settings


def test_defaults_without_variables() -> None:
    assert load_settings({"PATH": "/bin"}) == Settings()


def test_nested_values_are_converted() -> None:
    s = load_settings({"QIS_DB__POOL_MAX_SIZE": "7", "QIS_TELEMETRY__SAMPLE_RATE_QUERY": "0.2"})
    assert s.db.pool_max_size == 7
    assert s.telemetry.sample_rate_query == 0.2


@pytest.mark.parametrize("name", ["QIS_DB__NOPE", "QIS_NOPE__X", "QIS_FOO"])
def test_unknown_variable_is_named(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: "1"})


def test_bad_value_is_an_error() -> None:
    with pytest.raises(SettingsError, match="pool_max_size"):
        load_settings({"QIS_DB__POOL_MAX_SIZE": "many"})


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.db = s.db  # type: ignore[misc]


@pytest.mark.parametrize(("lanes", "pool"), [("0", "10"), ("10", "10"), ("4", "4")])
def test_worker_lanes_must_leave_a_connection_in_the_pool(lanes: str, pool: str) -> None:
    with pytest.raises(SettingsError, match="QIS_WORKER__LANES"):
        load_settings({"QIS_WORKER__LANES": lanes, "QIS_DB__POOL_MAX_SIZE": pool})


@pytest.mark.parametrize("name", ["MAX_BATCH_RECORDS", "MAX_TRANSACTION_OBSERVATIONS"])
@pytest.mark.parametrize("value", ["0", "-5", "100001"])
def test_worker_batch_bounds_are_refused_outside_their_range(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"QIS_WORKER__{name}={value} must be between"):
        load_settings({f"QIS_WORKER__{name}": value})


def test_worker_transaction_bound_is_read() -> None:
    settings = load_settings({"QIS_WORKER__MAX_TRANSACTION_OBSERVATIONS": "750"})
    assert settings.worker.max_transaction_observations == 750


def test_worker_lanes_below_the_pool_size_are_accepted() -> None:
    settings = load_settings({"QIS_WORKER__LANES": "3", "QIS_DB__POOL_MAX_SIZE": "4"})
    assert (settings.worker.lanes, settings.db.pool_max_size) == (3, 4)


def test_api_processes_default_to_one_and_accept_up_to_64() -> None:
    assert load_settings({}).api.processes == 1
    assert load_settings({"QIS_API__PROCESSES": "2"}).api.processes == 2
    assert load_settings({"QIS_API__PROCESSES": "64"}).api.processes == 64


@pytest.mark.parametrize("value", ["0", "-1", "65", "8000"])
def test_api_processes_out_of_bounds_are_refused_by_name(value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({"QIS_API__PROCESSES": value})
    assert str(refused.value) == f"QIS_API__PROCESSES={value} must be 1 to 64 (one per core)"


def test_api_processes_must_be_a_whole_number() -> None:
    with pytest.raises(SettingsError, match="processes"):
        load_settings({"QIS_API__PROCESSES": "two"})


def test_timestream_is_off_by_default_and_set_by_its_variables() -> None:
    assert Settings().timestream.enabled is False
    s = load_settings(
        {
            "QIS_TIMESTREAM__ENABLED": "true",
            "QIS_TIMESTREAM__DATABASE": "qis-prod-timeseries",
            "QIS_TIMESTREAM__ENDPOINT_URL": "",
            "QIS_TIMESTREAM__SECRET_ACCESS_KEY": "hush",
        }
    )
    assert (s.timestream.enabled, s.timestream.database, s.timestream.endpoint_url) == (
        True,
        "qis-prod-timeseries",
        "",
    )
    assert "hush" not in repr(s)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("QIS_TIMESTREAM__DATABASE", "qis timeseries"),
        ("QIS_TIMESTREAM__OFFICIAL_VALUES_TABLE", "ov"),
        ("QIS_TIMESTREAM__BATCH_SIZE", "0"),
        ("QIS_TIMESTREAM__MAX_ATTEMPTS", "21"),
        ("QIS_TIMESTREAM__RETRY_BASE_SECONDS", "9"),
    ],
)
def test_unusable_timestream_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match="QIS_TIMESTREAM__"):
        load_settings({name: value})
