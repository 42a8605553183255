"""Instance configuration: maubot's proxy config plus typed, validated views of its sections.

`read_settings` checks every key before anything uses it and reports *all* the wrong ones
at once, each by its dotted name, so an operator can fix a config in one go. The bot reads
and validates a new config before touching its running services: a wrong config is
refused and the bot keeps running on the settings it had (see bot.py).
"""

from __future__ import annotations

from collections.abc import Callable
import ipaddress
from typing import Any, TypeVar

import attrs
from mautrix.util.config import BaseProxyConfig, ConfigUpdateHelper

from .durations import DurationError, parse_duration
from .identity.verifier import IdentitySettings
from .matrix.ids import is_room_id, is_user_id
from .providers.registry import ProviderSettings, read_provider_settings
from .registration_settings import RegistrationSettings, read_registration_settings
from .sealing import read_key

T = TypeVar("T")

_COPIED_KEYS = (
    "operators",
    "accept_invites_from_anyone",
    "accept_direct_messages",
    "admin_room",
    "web.public_url",
    "web.session_lifetime",
    "web.max_body_bytes",
    "web.trusted_origins",
    "web.trusted_proxies",
    "web.client_name",
    "web.client_room_url",
    "rate_limits.session",
    "rate_limits.link_inspect",
    "rate_limits.link_claim",
    "identity.server_urls",
    "identity.allow_private_addresses",
    "identity.allowed_networks",
    "identity.homeserver_allow",
    "identity.homeserver_deny",
    "identity.timeout",
    "identity.seen_token_lifetime",
    "identity.dns_nameservers",
    "links.default_expiry",
    "links.max_expiry",
    "invites.reason",
    "invites.max_attempts",
    "invites.max_backoff",
    "matrix.request_timeout",
    "rechecks.interval",
    "rechecks.max_shrink",
    "rechecks.kick_reason",
    "rechecks.token_key",
    "providers",
    "registration",
)


class ConfigError(ValueError):
    """The config cannot be used. `problems` lists one sentence per wrong key, each
    starting with the key's dotted name."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Config(BaseProxyConfig):
    def do_update(self, helper: ConfigUpdateHelper) -> None:
        for key in _COPIED_KEYS:
            helper.copy(key)


@attrs.frozen
class WebSettings:
    public_url: str
    session_lifetime: float
    max_body_bytes: int
    trusted_origins: tuple[str, ...]
    # Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For is believed when
    # telling clients apart for rate limits. Empty: the connecting address is the client.
    trusted_proxies: tuple[str, ...] = ()
    # A web client offered next to matrix.to on the result page: its name and a URL
    # template with {room_id}; empty name: none offered.
    client_name: str = ""
    client_room_url: str = ""


@attrs.frozen
class RateLimit:
    """A token bucket per client address: `burst` requests at once, then one more every
    `refill` seconds. burst 0 turns the limit off."""

    burst: int
    refill: float


_DEFAULT_LIMITS = {
    "session": RateLimit(10, 6.0),
    "link_inspect": RateLimit(30, 2.0),
    "link_claim": RateLimit(10, 6.0),
}


@attrs.frozen
class RateLimitSettings:
    session: RateLimit = _DEFAULT_LIMITS["session"]
    link_inspect: RateLimit = _DEFAULT_LIMITS["link_inspect"]
    link_claim: RateLimit = _DEFAULT_LIMITS["link_claim"]


@attrs.frozen
class LinkSettings:
    default_expiry: float | None
    max_expiry: float


@attrs.frozen
class InviteSettings:
    reason: str
    max_attempts: int
    max_backoff: float


@attrs.frozen
class RecheckSettings:
    # Seconds between re-checks of a binding (each one jittered by up to a tenth).
    interval: float = 6 * 3600.0
    # A listing this much shorter than the last complete one stops the re-check, which
    # then tells the admins instead of acting: an outage answering with a short list is
    # not a loss of members.
    max_shrink: float = 0.2
    # What a removed person reads; {rule} is the rule they no longer meet, in words.
    kick_reason: str = "You no longer meet this room's rule: {rule}."
    # Seals the refresh tokens kept for per-person re-checks (providers with
    # `keep_refresh_tokens`); None: no token is ever kept.
    token_key: bytes | None = attrs.field(default=None, repr=False)


@attrs.frozen
class MatrixSettings:
    # Bound on each call to the bot's homeserver made while answering a person (a web
    # request or a command); maubot's client itself waits as long as the server hangs.
    request_timeout: float = 5.0


@attrs.frozen
class Settings:
    operators: frozenset[str]
    accept_invites_from_anyone: bool
    accept_direct_messages: bool
    admin_room: str
    web: WebSettings
    identity: IdentitySettings
    links: LinkSettings
    invites: InviteSettings
    rate_limits: RateLimitSettings = RateLimitSettings()
    matrix: MatrixSettings = MatrixSettings()
    rechecks: RecheckSettings = RecheckSettings()
    providers: ProviderSettings = attrs.field(factory=ProviderSettings)
    registration: RegistrationSettings = attrs.field(factory=RegistrationSettings)


class _Missing:
    pass


_MISSING = _Missing()


class SettingsReader:
    """Reads typed values by dotted key, collecting a problem per wrong key instead of
    stopping at the first, so the operator hears about every wrong key at once."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self.problems: list[str] = []

    def raw(self, key: str) -> Any:
        """The value as the config holds it (None when absent), for sections read elsewhere."""
        value = self._raw(key)
        return None if value is _MISSING else value

    def _raw(self, key: str) -> Any:
        try:
            return self._config[key]
        except (KeyError, TypeError, AttributeError):
            return _MISSING

    def _check(self, key: str, default: T, convert: Callable[[Any], T]) -> T:
        raw = self._raw(key)
        if raw is _MISSING or raw is None:
            return default
        try:
            return convert(raw)
        except ValueError as e:
            self.problems.append(f"{key}: {e}")
            return default

    def boolean(self, key: str, default: bool) -> bool:
        def convert(raw: Any) -> bool:
            if not isinstance(raw, bool):
                raise ValueError(f"must be true or false, not {raw!r}")
            return raw

        return self._check(key, default, convert)

    def string(self, key: str, default: str = "") -> str:
        def convert(raw: Any) -> str:
            if not isinstance(raw, str):
                raise ValueError(f"must be a string, not {raw!r}")
            return raw

        return self._check(key, default, convert)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        def convert(raw: Any) -> int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise ValueError(f"must be a whole number, not {raw!r}")
            if not low <= raw <= high:
                raise ValueError(f"must be between {low} and {high}, not {raw}")
            return raw

        return self._check(key, default, convert)

    def seconds(self, key: str, default: float, low: float = 0, high: float = 1e9) -> float:
        """A duration ("30s", "7d") or a plain number of seconds."""

        def convert(raw: Any) -> float:
            try:
                value = parse_duration(raw)
            except DurationError as e:
                raise ValueError(str(e)) from None
            if not low <= value <= high:
                raise ValueError(f"must be between {low:g}s and {high:g}s, not {value:g}s")
            return value

        return self._check(key, default, convert)

    def fraction(self, key: str, default: float) -> float:
        """A share between 0 and 1: 0.2, or "20%"."""

        def convert(raw: Any) -> float:
            text = raw.strip() if isinstance(raw, str) else raw
            percent = isinstance(text, str) and text.endswith("%")
            try:
                if isinstance(text, bool):
                    raise ValueError
                value = float(text[:-1] if percent else text)
            except (TypeError, ValueError):
                raise ValueError(f"must be a fraction such as 0.2 or 20%, not {raw!r}") from None
            value = value / 100 if percent else value
            if not 0 <= value <= 1:
                raise ValueError(f"must be between 0 and 1 (0% and 100%), not {raw!r}")
            return value

        return self._check(key, default, convert)

    def token_key(self, key: str) -> bytes | None:
        """A sealing key (base64 of 32 bytes), or None when empty."""

        def convert(raw: Any) -> bytes | None:
            if not isinstance(raw, str):
                raise ValueError("must be a string: 32 random bytes in base64")
            return read_key(raw) if raw.strip() else None

        return self._check(key, None, convert)

    def optional_seconds(self, key: str, default: float) -> float | None:
        """Like seconds(), but "" (or an empty value) means none."""
        if self._raw(key) in ("", None):
            return None
        return self.seconds(key, default, 60)

    def strings(self, key: str, check: Callable[[str], None] | None = None) -> tuple[str, ...]:
        def convert(raw: Any) -> tuple[str, ...]:
            if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
                raise ValueError(f"must be a list of strings, not {raw!r}")
            for value in raw:
                if check is not None:
                    check(value)
            return tuple(raw)

        return self._check(key, (), convert)

    def string_map(
        self, key: str, check: Callable[[str, str], None] | None = None
    ) -> dict[str, str]:
        def convert(raw: Any) -> dict[str, str]:
            if not isinstance(raw, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
            ):
                raise ValueError(f"must be a mapping of strings to strings, not {raw!r}")
            for name, value in raw.items():
                if check is not None:
                    check(name, value)
            return dict(raw)

        return self._check(key, {}, convert)

    def rate_limit(self, key: str, default: RateLimit) -> RateLimit:
        def convert(raw: Any) -> RateLimit:
            if not isinstance(raw, dict) or set(raw) - {"burst", "refill"}:
                raise ValueError(f"must be a mapping with burst and refill, not {raw!r}")
            burst = raw.get("burst", default.burst)
            if isinstance(burst, bool) or not isinstance(burst, int) or not 0 <= burst <= 10**6:
                raise ValueError(f"burst must be a whole number from 0 to 1000000, not {burst!r}")
            try:
                refill = parse_duration(raw.get("refill", default.refill))
            except DurationError as e:
                raise ValueError(f"refill: {e}") from None
            if burst and refill <= 0:
                raise ValueError("refill must be longer than 0s")
            return RateLimit(burst, refill)

        return self._check(key, default, convert)


def _http_url(name: str, url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"[{name}] must be an http(s) URL, not {url!r}")


def _network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR network") from None


def _origin(value: str) -> None:
    if not value.startswith(("http://", "https://")) or value.rstrip("/").count("/") != 2:
        raise ValueError(f"{value!r} is not an origin such as https://example.org")


def _user_id(value: str) -> None:
    if not is_user_id(value):
        raise ValueError(f"{value!r} is not a Matrix user ID such as @you:example.org")


def read_settings(config: Any) -> Settings:
    """Typed, validated settings from the loaded config; raises ConfigError naming every
    wrong key."""
    r = SettingsReader(config)
    client_room_url = r.string("web.client_room_url")
    if client_room_url and (
        not client_room_url.startswith("https://") or "{room_id}" not in client_room_url
    ):
        r.problems.append(
            "web.client_room_url: must be an https:// URL containing {room_id}, "
            f"not {client_room_url!r}"
        )
        client_room_url = ""
    admin_room = r.string("admin_room")
    if admin_room and not is_room_id(admin_room):
        r.problems.append(f"admin_room: must be a room ID (!...), not {admin_room!r}")
        admin_room = ""
    public_url = r.string("web.public_url")
    if public_url and not public_url.startswith(("http://", "https://")):
        r.problems.append(f"web.public_url: must be an http(s) URL, not {public_url!r}")
        public_url = ""
    settings = Settings(
        operators=frozenset(r.strings("operators", _user_id)),
        accept_invites_from_anyone=r.boolean("accept_invites_from_anyone", False),
        accept_direct_messages=r.boolean("accept_direct_messages", True),
        admin_room=admin_room,
        web=WebSettings(
            public_url=public_url.rstrip("/"),
            session_lifetime=r.seconds("web.session_lifetime", 3600, 60, 30 * 86400),
            max_body_bytes=r.integer("web.max_body_bytes", 16384, 1024, 1_048_576),
            trusted_origins=r.strings("web.trusted_origins", _origin),
            trusted_proxies=r.strings("web.trusted_proxies", _network),
            client_name=r.string("web.client_name") if client_room_url else "",
            client_room_url=client_room_url,
        ),
        rate_limits=RateLimitSettings(
            **{
                name: r.rate_limit(f"rate_limits.{name}", default)
                for name, default in _DEFAULT_LIMITS.items()
            }
        ),
        identity=IdentitySettings(
            server_urls=r.string_map("identity.server_urls", _http_url),
            allow_private_addresses=r.boolean("identity.allow_private_addresses", False),
            homeserver_allow=r.strings("identity.homeserver_allow"),
            homeserver_deny=r.strings("identity.homeserver_deny"),
            timeout=r.seconds("identity.timeout", 10, 1, 120),
            seen_token_ttl=r.seconds("identity.seen_token_lifetime", 3600, 60, 7 * 86400),
            dns_nameservers=r.strings("identity.dns_nameservers"),
            allowed_networks=r.strings("identity.allowed_networks", _network),
        ),
        links=LinkSettings(
            default_expiry=r.optional_seconds("links.default_expiry", 7 * 86400),
            max_expiry=r.seconds("links.max_expiry", 365 * 86400, 60),
        ),
        invites=InviteSettings(
            reason=r.string("invites.reason", "Invited by thirdparty_invite"),
            max_attempts=r.integer("invites.max_attempts", 8, 1, 1000),
            max_backoff=r.seconds("invites.max_backoff", 600, 1, 7 * 86400),
        ),
        matrix=MatrixSettings(request_timeout=r.seconds("matrix.request_timeout", 5, 1, 60)),
        rechecks=RecheckSettings(
            interval=r.seconds("rechecks.interval", 6 * 3600, 60, 30 * 86400),
            max_shrink=r.fraction("rechecks.max_shrink", 0.2),
            kick_reason=r.string("rechecks.kick_reason", RecheckSettings.kick_reason),
            token_key=r.token_key("rechecks.token_key"),
        ),
        providers=read_provider_settings(r.raw("providers"), r.problems),
        registration=read_registration_settings(r),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return settings
