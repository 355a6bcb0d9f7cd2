"""URLs with what may be a credential in them taken out, for logs and for those who may list them: webhook
receivers (`user:password@`, `?token=`), cameras (`rtsp://user:password@…`)."""

from __future__ import annotations

import urllib.parse


def redacted(url: str) -> str:
    """`url` without its user, password and query; what is not a URL (a file path, a camera index) as it is."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:  # a password holding `#` or `/`, a port that is none: nothing of it is shown
        return f"{scheme}://***"
    if parts.username is None and "@" in rest.split("?", 1)[0]:  # a user part the parser did not see as one
        return f"{scheme}://***"
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 address keeps its brackets
    netloc = ("***@" if parts.username or parts.password else "") + host + (f":{port}" if port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))
