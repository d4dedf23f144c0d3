"""The test suite's warning filters (pyproject.toml): every warning is an error except a
loopback socket that never connected, which PyMongo leaves to the garbage collector when
`close()` cancels a connection attempt. A socket that did connect and was not closed
still fails."""

from __future__ import annotations

import socket
import tomllib
import warnings
from pathlib import Path

import pytest
from _pytest.config import parse_warning_filter

ROOT = Path(__file__).resolve().parents[2]


def apply_suite_filters() -> None:
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    for text in options["ini_options"]["filterwarnings"]:
        warnings.filterwarnings(*parse_warning_filter(text, escape=False))


def unclosed(sock: socket.socket) -> ResourceWarning:
    """The warning `socket.__del__` gives for `sock`."""
    return ResourceWarning(f"unclosed {sock!r}")


def test_a_loopback_socket_that_never_connected_is_not_an_error() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # refused: nothing listens
        warning = unclosed(sock)
    assert "raddr" not in str(warning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        apply_suite_filters()
        warnings.warn(warning, stacklevel=1)
    assert caught == []


def test_a_connected_socket_left_open_is_an_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()) as sock:
            warning = unclosed(sock)
        server.accept()[0].close()
    assert "raddr=('127.0.0.1'" in str(warning)
    with warnings.catch_warnings():
        warnings.resetwarnings()
        apply_suite_filters()
        with pytest.raises(ResourceWarning, match=r"unclosed <socket\.socket"):
            warnings.warn(warning, stacklevel=1)
