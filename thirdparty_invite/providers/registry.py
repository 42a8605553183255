"""The only module that names every provider: reads the `providers` config section and
builds the configured providers.

Config shape (base-config.yaml documents it for operators):

    providers:
      max_matrix_ids_per_account: 1
      github:   {client_id: ..., client_secret: ..., ...}
      patreon:  {client_id: ..., client_secret: ..., campaign_id: ...}
      gitlab:   {client_id: ..., client_secret: ..., base_url: https://gitlab.com}
      discord:  {client_id: ..., client_secret: ...}
      oidc:
        staff:  {name: Our Keycloak, issuer: ..., client_id: ..., client_secret: ...}

A provider with an empty client_id is not configured (the base config lists them all,
empty). Each OpenID Connect provider is known by its id under `oidc` (`staff` above), so
rules read `staff groups:staff`.

authlib is optional: without it the plugin still runs invite links, and `unavailable`
says what to install.
"""

from __future__ import annotations

import importlib
from typing import Any

import attrs

from .base import Provider

# kind -> module and class. Adding a provider: one module, one line here.
PROVIDER_CLASSES: dict[str, tuple[str, str]] = {
    "github": ("github", "GitHubProvider"),
    "patreon": ("patreon", "PatreonProvider"),
    "gitlab": ("gitlab", "GitLabProvider"),
    "discord": ("discord", "DiscordProvider"),
    "oidc": ("oidc", "OIDCProvider"),
}
SINGLE_KINDS = ("github", "patreon", "gitlab", "discord")
MISSING_AUTHLIB = (
    "Provider rules need the Python package authlib in maubot's environment: "
    "`pip install authlib` (in the maubot container: `docker exec <container> pip install "
    "authlib`), then restart maubot."
)


def authlib_missing() -> bool:
    try:
        import authlib  # noqa: F401
        import joserfc  # noqa: F401
    except ImportError:
        return True
    return False


def provider_class(kind: str) -> type[Provider]:
    module_name, class_name = PROVIDER_CLASSES[kind]
    module = importlib.import_module(f"{__package__}.{module_name}")
    return getattr(module, class_name)


@attrs.frozen
class ProviderConfig:
    id: str
    kind: str
    section: dict[str, Any] = attrs.field(eq=False)


@attrs.frozen
class ProviderSettings:
    max_matrix_ids_per_account: int = 1
    configured: tuple[ProviderConfig, ...] = ()


def _configured(section: Any) -> bool:
    return isinstance(section, dict) and bool(section.get("client_id"))


def read_provider_settings(raw: Any, problems: list[str]) -> ProviderSettings:
    """Validated provider settings from the `providers` section; each wrong key is added to
    `problems` as "providers.<id>.<key>: why". Needs no network and no authlib."""
    if raw in (None, ""):
        return ProviderSettings()
    if not isinstance(raw, dict):
        problems.append(f"providers: must be a mapping, not {raw!r}")
        return ProviderSettings()
    max_ids = raw.get("max_matrix_ids_per_account", 1)
    if isinstance(max_ids, bool) or not isinstance(max_ids, int) or not 1 <= max_ids <= 1000:
        problems.append(
            f"providers.max_matrix_ids_per_account: must be a whole number from 1 to 1000, "
            f"not {max_ids!r}"
        )
        max_ids = 1
    entries: list[tuple[str, str, Any, str]] = []
    for kind in SINGLE_KINDS:
        entries.append((kind, kind, raw.get(kind), f"providers.{kind}"))
    oidc = raw.get("oidc") or {}
    if not isinstance(oidc, dict):
        problems.append(f"providers.oidc: must be a mapping of ids to providers, not {oidc!r}")
        oidc = {}
    for provider_id, section in oidc.items():
        where = f"providers.oidc.{provider_id}"
        if not isinstance(provider_id, str) or not provider_id.replace("-", "").isalnum():
            problems.append(f"{where}: an id is letters, digits and dashes")
            continue
        if provider_id.lower() in PROVIDER_CLASSES or provider_id.lower() == "link":
            problems.append(f"{where}: the id {provider_id!r} is taken by a built-in provider")
            continue
        entries.append((provider_id.lower(), "oidc", section, where))
    configured = []
    for provider_id, kind, section, where in entries:
        if section is None or (isinstance(section, dict) and not _configured(section)):
            continue
        if not isinstance(section, dict):
            problems.append(f"{where}: must be a mapping, not {section!r}")
            continue
        try:
            provider_class(kind).from_config(provider_id, section, None)
        except ValueError as e:
            problems.append(f"{where}.{e}")
            continue
        configured.append(ProviderConfig(provider_id, kind, dict(section)))
    return ProviderSettings(max_matrix_ids_per_account=max_ids, configured=tuple(configured))


class ProviderRegistry:
    """The configured providers of one running instance, by id."""

    def __init__(self, settings: ProviderSettings, http: Any) -> None:
        self.settings = settings
        self.unavailable = MISSING_AUTHLIB if authlib_missing() else ""
        self._providers: dict[str, Provider] = {}
        if not self.unavailable:
            for config in settings.configured:
                self._providers[config.id] = provider_class(config.kind).from_config(
                    config.id, config.section, http
                )

    def get(self, provider_id: str) -> Provider | None:
        return self._providers.get(provider_id.lower())

    def all(self) -> list[Provider]:
        return list(self._providers.values())

    @staticmethod
    def known_kinds() -> list[str]:
        return list(PROVIDER_CLASSES)

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
