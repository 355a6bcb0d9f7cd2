"""URLs with what may be a credential in them taken out, for logs and for those who may list them: webhook
receivers (`user:password@`, `?token=`), cameras (`rtsp://user:password@…`)."""

from __future__ import annotations

import urllib.parse


def redacted(url: str) -> str:
    """`url` without its user, password and query; what is not a URL (a file path, a camera index) as it is."""
    if "://" not in url:
        return url
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 address keeps its brackets
    netloc = ("***@" if parts.username or parts.password else "") + host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))
