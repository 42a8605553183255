"""Reading a provider's config section: the checks every provider makes on its settings.

Each function raises `ValueError("<key>: <why>")`; the registry prefixes it with
`providers.<id>.` for the operator. Nothing here touches the network, so the registry can
validate config without authlib and without an `OutboundHTTP`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import ipaddress
from typing import Any
from urllib.parse import urlsplit

MAX_TEXT_LENGTH = 1000  # client IDs, secrets and names are far shorter


def refuse_unknown_settings(section: Mapping[str, Any], known: Sequence[str]) -> None:
    """A misspelt optional key would otherwise fall back to its default without a word."""
    for key in section:
        if key not in known:
            raise ValueError(f"{key}: unknown setting (known: {', '.join(known)})")


def text_setting(section: Mapping[str, Any], key: str, default: str | None = None) -> str:
    """A non-empty string, stripped; `default` when the key is absent (a key given empty is
    an error, not the default)."""
    value = section.get(key, default)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"{key}: must be a non-empty string")
    return value.strip()


def url_setting(
    section: Mapping[str, Any],
    key: str,
    default: str | None = None,
    *,
    example: str = "",
    exact: bool = False,
) -> str:
    """An absolute http(s) URL without query, fragment or credentials; `default` when the
    key is absent or empty. Plain http only for loopback hosts (local test servers): the
    client secret and people's tokens travel to these URLs. Returned without its trailing
    slash (a base URL that paths are appended to), or, with `exact`, as written (an OpenID
    issuer must equal the tokens' `iss` to the character)."""
    value = section.get(key) or default
    example = example or default or "https://sso.example.org"
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key}: must be a URL such as {example}")
    url = value.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # an unclosed [ of an IPv6 address
        parts, host = urlsplit(""), ""
    if not host or parts.scheme not in ("https", "http"):
        raise ValueError(f"{key}: must be an absolute http(s) URL such as {example}, not {url!r}")
    # The value is not repeated here: it may hold a password.
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{key}: must not carry a query, a fragment or credentials")
    if parts.scheme == "http" and not is_loopback(host):
        raise ValueError(f"{key}: must use https:// (http:// only for loopback addresses)")
    return url if exact else url.rstrip("/")


def is_loopback(host: str) -> bool:
    """localhost or a loopback IP address (127.0.0.0/8, ::1)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secret_setting(section: Mapping[str, Any], key: str) -> str | None:
    """An optional secret (a webhook's): None when absent or empty. Used byte for byte
    (a signature is computed over it), so it is not stripped: spaces around it are refused
    as a copying mistake."""
    value = section.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"{key}: must be a string (the secret you gave the sender)")
    if value != value.strip():
        raise ValueError(f"{key}: has spaces around it; remove them")
    return value
