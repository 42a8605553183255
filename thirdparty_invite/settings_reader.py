"""Reading typed values from maubot's config by dotted key, collecting one problem per wrong
key instead of stopping at the first (config.py's `read_settings`, and the sections read
beside it, use one reader so the operator hears about every wrong key at once)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from .durations import DurationError, parse_duration
from .sealing import read_key

T = TypeVar("T")


@attrs.frozen
class RateLimit:
    """A token bucket per client address: `burst` requests at once, then one more every
    `refill` seconds. burst 0 turns the limit off."""

    burst: int
    refill: float


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
