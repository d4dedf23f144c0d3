"""The query cache's policy is the configured one: every field from `QIS_CACHE__*`."""

from __future__ import annotations

import msgspec

from app.entrypoints.api import cache_policy
from app.services.cache import CachePolicy
from app.settings import CacheSettings, load_settings


def test_every_policy_field_comes_from_its_setting() -> None:
    fields = CachePolicy.__struct_fields__
    environ = {f"QIS_CACHE__{name.upper()}": str(7 + index) for index, name in enumerate(fields)}

    policy = cache_policy(load_settings(environ).cache)

    assert msgspec.structs.asdict(policy) == {name: 7 + index for index, name in enumerate(fields)}


def test_the_policys_defaults_are_the_settings_defaults() -> None:
    assert cache_policy(CacheSettings()) == CachePolicy()
