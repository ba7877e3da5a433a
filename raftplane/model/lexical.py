"""Lexical checks shared by the API (validating bodies) and xDS translation.

Plain functions and patterns with no dependency on either layer.
"""

from __future__ import annotations

import ipaddress

# An HTTP header name (RFC 9110 token), optionally a ":pseudo" header.
HEADER_NAME_PATTERN = r"^:?[!#$%&'*+.^_`|~0-9A-Za-z-]+$"


def is_ip(value: str) -> bool:
    """True for an IPv4 or IPv6 literal (no zone index)."""
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
