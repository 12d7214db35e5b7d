"""The fork server's request check: anything but the three absolute paths is refused."""

from __future__ import annotations

import pytest

from vzvnc.domain.forkserver import Request, _parse


def test_a_well_formed_request_is_taken() -> None:
    data = b'{"domain_file": "/h/d/x.toml", "run_dir": "/h/run/x", "log": "/h/run/x/l"}'
    assert _parse(data) == Request("/h/d/x.toml", "/h/run/x", "/h/run/x/l")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'{"domain_file": "/a", "run_dir": "/b"}',
        b'{"domain_file": "/a", "run_dir": "/b", "log": "/c", "argv": ["sh"]}',
        b'{"domain_file": "a.toml", "run_dir": "/b", "log": "/c"}',
        b'{"domain_file": 1, "run_dir": "/b", "log": "/c"}',
    ],
)
def test_malformed_requests_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        _parse(data)
