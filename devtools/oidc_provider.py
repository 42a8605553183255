"""Run the test OpenID Connect provider (devtools/oidc/server.mjs) on 127.0.0.1.

Synapse logs users in through it (SSO) in the browser tests. One confidential client
(Synapse), more with ``add_client`` (the plugin's own OIDC sign-in), and a list of test
accounts with their groups; the login page checks their passwords.

    async with OIDCProvider(workdir) as provider:
        alice = provider.add_account("alice", "correct horse")
        synapse = SynapseServer(..., extra_config={"oidc_providers": [
            oidc_provider_config(provider, idp_id="test")]})
        await synapse.start()
        provider.allow_redirect_uri(synapse.oidc_callback_url)

The server reads the client and the accounts from its config file whenever it needs them,
so ``add_account`` and ``allow_redirect_uri`` work on a running provider. The redirect URI
is added after Synapse started because Synapse's port is only known then.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import secrets
from typing import Any

import attrs

from devtools.ports import ManagedServer

OIDC_DIR = Path(__file__).resolve().parent / "oidc"


@attrs.frozen
class OIDCAccount:
    """A user of the test provider: ``preferred_username`` (what the login form takes, as
    does ``email``) becomes the Matrix localpart through Synapse's user mapping."""

    sub: str
    preferred_username: str
    name: str
    email: str
    password: str
    groups: tuple[str, ...] = ()  # the "groups" claim, released by the "groups" scope
    # None: true when the account has an email; "omit": no claim; a string is sent as is.
    email_verified: bool | str | None = None
    group_overage: bool = False  # answer as Microsoft Entra for too many groups


@attrs.frozen
class OIDCClient:
    """One more relying party of the provider (besides Synapse's ``client_id``)."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    client_name: str
    token_endpoint_auth_method: str = "client_secret_basic"


class OIDCProvider(ManagedServer):
    """``node devtools/oidc/server.mjs`` on ``http://127.0.0.1:<port>``, state in memory.

    Needs ``devtools/oidc/node_modules`` (``./dev test`` runs ``npm ci`` there).
    """

    name = "OIDC provider"
    startup_timeout = 30.0
    port_taken_markers = ("eaddrinuse",)

    def __init__(
        self,
        workdir: Path,
        *,
        client_id: str = "synapse",
        client_secret: str | None = None,
        client_name: str = "Synapse",
        redirect_uris: list[str] | None = None,
        port: int | None = None,
        node: str | None = None,
        keycloak_like: bool = False,
    ) -> None:
        super().__init__(workdir, port=port)
        # Answer as Keycloak with a group mapper: no "groups" scope (the claim comes with
        # "openid"), and invalid_scope for a scope it does not offer (server.mjs).
        self.keycloak_like = keycloak_like
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.client_name = client_name
        self.redirect_uris: list[str] = list(redirect_uris or [])
        self.accounts: list[OIDCAccount] = []
        self.clients: list[OIDCClient] = []
        self.node = node or os.environ.get("NODE") or "node"

    # -- addresses, config, logs -----------------------------------------------------------

    @property
    def ready_url(self) -> str:
        return f"{self.base_url}/.well-known/openid-configuration"

    @property
    def issuer(self) -> str:
        """The issuer URL (no trailing slash), as Synapse's ``issuer`` option wants it."""
        return self.base_url

    @property
    def config_path(self) -> Path:
        return self.workdir / "oidc-provider.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / "oidc-provider.log"

    def _config(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "issuer": self.issuer,
            "keycloak_like": self.keycloak_like,
            "client": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "client_name": self.client_name,
                "redirect_uris": self.redirect_uris,
            },
            "clients": [attrs.asdict(client) for client in self.clients],
            "accounts": [attrs.asdict(account) for account in self.accounts],
        }

    def _write_config(self) -> None:
        if not self.port:  # not started yet: start() writes it
            return
        # The running server reads this file on every login: replace it in one step so
        # it never sees half a file.
        partial = self.config_path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self._config(), indent=2))
        partial.replace(self.config_path)

    # -- accounts and the client -----------------------------------------------------------

    def add_account(
        self,
        username: str,
        password: str | None = None,
        *,
        name: str | None = None,
        email: str | None = None,
        sub: str | None = None,
        groups: tuple[str, ...] | list[str] = (),
        email_verified: bool | str | None = None,
        group_overage: bool = False,
    ) -> OIDCAccount:
        """Add a user who can sign in with ``username`` and ``password`` (random if None).

        Works before and after start(). ``username`` is the ``preferred_username`` claim.
        """
        if any(account.preferred_username == username for account in self.accounts):
            raise ValueError(f"the OIDC provider already has an account {username!r}")
        account = OIDCAccount(
            sub=sub or f"sub-{username}-{secrets.token_hex(4)}",
            preferred_username=username,
            name=name or username.capitalize(),
            email=email or f"{username}@example.test",
            password=password or secrets.token_urlsafe(12),
            groups=tuple(groups),
            email_verified=email_verified,
            group_overage=group_overage,
        )
        self.accounts.append(account)
        self._write_config()
        return account

    def set_groups(self, username: str, groups: tuple[str, ...] | list[str]) -> OIDCAccount:
        """Change an account's groups (their next sign-in sees them)."""
        index = next(i for i, a in enumerate(self.accounts) if a.preferred_username == username)
        self.accounts[index] = attrs.evolve(self.accounts[index], groups=tuple(groups))
        self._write_config()
        return self.accounts[index]

    def remove_account(self, username: str) -> None:
        """Delete an account: its tokens stop working (oidc-provider finds no account)."""
        self.accounts = [a for a in self.accounts if a.preferred_username != username]
        self._write_config()

    def add_client(
        self,
        client_id: str,
        *,
        client_secret: str | None = None,
        redirect_uris: tuple[str, ...] | list[str] = (),
        client_name: str = "Matrix invites",
        token_endpoint_auth_method: str = "client_secret_basic",
    ) -> OIDCClient:
        """Register another confidential client (works before and after start())."""
        if client_id == self.client_id or any(c.client_id == client_id for c in self.clients):
            raise ValueError(f"the OIDC provider already has a client {client_id!r}")
        client = OIDCClient(
            client_id,
            client_secret or secrets.token_urlsafe(24),
            tuple(redirect_uris),
            client_name,
            token_endpoint_auth_method,
        )
        self.clients.append(client)
        self._write_config()
        return client

    def allow_redirect_uri(self, uri: str) -> None:
        """Register one more redirect URI for the client (e.g. ``synapse.oidc_callback_url``)."""
        if uri not in self.redirect_uris:
            self.redirect_uris.append(uri)
            self._write_config()

    def config_section(
        self,
        *,
        client_id: str = "thirdparty-invite",
        client_secret: str | None = None,
        redirect_uris: tuple[str, ...] | list[str] = (),
        name: str = "Test OpenID Provider",
    ) -> dict[str, str]:
        """Register a client for the plugin (once; later calls add redirect URIs) and return
        what goes under ``providers.oidc.<id>`` in the plugin's config to sign in here."""
        client = next((c for c in self.clients if c.client_id == client_id), None)
        if client is None:
            client = self.add_client(client_id, client_secret=client_secret)
        for uri in redirect_uris:
            self.allow_client_redirect_uri(client_id, uri)
        return {
            "name": name,
            "issuer": self.issuer,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        }

    def allow_client_redirect_uri(self, client_id: str, uri: str) -> None:
        """Register one more redirect URI for a client of ``add_client`` (the plugin's
        callback URL is only known once maubot runs)."""
        index = next(i for i, c in enumerate(self.clients) if c.client_id == client_id)
        client = self.clients[index]
        if uri not in client.redirect_uris:
            self.clients[index] = attrs.evolve(client, redirect_uris=(*client.redirect_uris, uri))
            self._write_config()

    # -- lifecycle -------------------------------------------------------------------------

    def _check_prerequisites(self) -> None:
        if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(
                f"{OIDC_DIR}/node_modules is missing: run ./dev test (it runs npm ci there)."
            )

    def _configure(self) -> None:
        self._write_config()

    def _command(self) -> tuple[list[str], Path]:
        return [self.node, str(OIDC_DIR / "server.mjs"), str(self.config_path)], OIDC_DIR
