"""gridwatch.redact: a URL for logs and listings, without what may be a credential in it."""

from __future__ import annotations

import pytest

from gridwatch.redact import redacted


@pytest.mark.parametrize(("url", "shown"), [
    ("https://bot:pa55@hooks.example.org/notify?token=abc", "https://***@hooks.example.org/notify?***"),
    ("http://[::1]:8080/hook", "http://[::1]:8080/hook"),
    ("http://hooks.example.org/hook", "http://hooks.example.org/hook"),
    ("rtsp://viewer:s3cret@192.0.2.10:554/stream1", "rtsp://***@192.0.2.10:554/stream1"),
    ("/var/lib/gridwatch/clips/kerb.avi", "/var/lib/gridwatch/clips/kerb.avi"),
    ("0", "0"),
    # found by review: these raised (and took the whole node down at start) or showed the password
    ("rtsp://admin:pa#ss@10.0.0.5/s", "rtsp://***"),
    ("rtsp://cam:99999/s", "rtsp://***"),
    ("rtsp://[fe80::1/s", "rtsp://***"),
    ("rtsp://admin:12/34@10.0.0.5/s", "rtsp://***"),
])
def test_a_url_is_shown_without_its_credentials_and_otherwise_as_it_is(url, shown):
    assert redacted(url) == shown
