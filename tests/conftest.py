"""Shared test helpers: unique series ids, settings from the environment."""

from __future__ import annotations

import os
import uuid

import pytest

from app.settings import Settings, load_settings
from tests.auth import auth_settings


def unique_series(prefix: str = "T") -> str:
    """A series id no other test uses, so tests never wipe shared tables."""
    return f"{prefix}{uuid.uuid4().hex[:12].upper()}"


@pytest.fixture(scope="session")
def settings() -> Settings:
    # Authentication stays on: the api under test checks the test issuer's tokens.
    return auth_settings(load_settings(os.environ))
