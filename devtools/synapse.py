"""Run a throw-away Synapse homeserver on 127.0.0.1 for tests and the demo."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import logging
import os
from pathlib import Path
import re
import secrets
import sys
from typing import TYPE_CHECKING, Any

import aiohttp

from devtools.matrix_user import MatrixRequestError, MatrixUser
from devtools.ports import LOOPBACK, ManagedServer

if TYPE_CHECKING:
    from devtools.oidc_provider import OIDCProvider


REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SYNAPSE_PYTHON = REPO_ROOT / ".venv-synapse" / "bin" / "python"

# Generous enough that no test or demo ever sees a 429 unless it asks for one.
_RELAXED = {"per_second": 10000, "burst_count": 100000}

RELAXED_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _RELAXED,
    "rc_registration": _RELAXED,
    "rc_registration_token_validity": _RELAXED,
    "rc_login": {"address": _RELAXED, "account": _RELAXED, "failed_attempts": _RELAXED},
    "rc_admin_redaction": _RELAXED,
    "rc_joins": {"local": _RELAXED, "remote": _RELAXED},
    "rc_joins_per_room": _RELAXED,
    "rc_3pid_validation": _RELAXED,
    "rc_invites": {"per_room": _RELAXED, "per_user": _RELAXED, "per_issuer": _RELAXED},
    "rc_third_party_invite": _RELAXED,
    "rc_key_requests": _RELAXED,
    "rc_media_create": _RELAXED,
    "rc_presence": {"per_user": _RELAXED},
    "rc_delayed_event_mgmt": _RELAXED,
    "rc_room_creation": _RELAXED,
    "rc_reports": _RELAXED,
    "rc_user_directory": _RELAXED,
    "rc_profile": _RELAXED,
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": 10000,
        "sleep_delay": 1,
        "reject_limit": 100000,
        "concurrent": 1000,
    },
    "federation_rr_transactions_per_room_per_second": 10000,
}


# An invite Synapse refused with 429, as its access log records the request.
REFUSED_INVITE_LINE = re.compile(r'Processed request: .* 429 "POST [^"]*/invite ')


def limited_invites(per_second: float, burst: int) -> dict[str, Any]:
    """``rc_invites`` that limit invites per room and per inviting user (the bot) to
    ``per_second`` with ``burst``; invites per invited user stay relaxed."""
    limit = {"per_second": per_second, "burst_count": burst}
    return {"per_room": limit, "per_issuer": limit, "per_user": dict(_RELAXED)}


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of ``base`` with ``override`` merged in (nested dicts merge, the rest replaces)."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


OIDC_CALLBACK_PATH = "/_synapse/client/oidc/callback"


def oidc_provider_config(
    provider: OIDCProvider, *, idp_id: str = "test", idp_name: str = "Test OpenID Provider"
) -> dict[str, Any]:
    """One ``oidc_providers`` entry for SSO through ``provider`` (a started OIDCProvider).

    Pass it as ``extra_config={"oidc_providers": [entry]}``; once Synapse runs, call
    ``provider.allow_redirect_uri(synapse.oidc_callback_url)``. Synapse names the identity
    provider ``oidc-<idp_id>``: ``/_matrix/client/v3/login/sso/redirect/oidc-<idp_id>``.
    The ``preferred_username`` claim becomes the localpart, and signing in as an existing
    user's localpart logs into that user.

    No TLS is needed for the browser: Synapse sets its OIDC session cookies with ``Secure``
    (and ``SameSite=None``) even over http, and Chromium keeps ``Secure`` cookies from
    ``http://127.0.0.1`` because loopback counts as a potentially trustworthy origin. On
    any other plain-http host the callback would fail with "No session cookie found".
    """
    return {
        "idp_id": idp_id,
        "idp_name": idp_name,
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
        "scopes": ["openid", "profile", "email"],
        # Synapse insists on an https issuer unless verification is skipped; this one is
        # plain http on loopback. Discovery and ID token signatures are still checked.
        "skip_verification": True,
        "allow_existing_users": True,
        "user_mapping_provider": {
            "config": {
                "localpart_template": "{{ user.preferred_username }}",
                "display_name_template": "{{ user.name }}",
            }
        },
    }


def _unpadded_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


class SynapseServer(ManagedServer):
    """A Synapse on ``http://127.0.0.1:<port>`` with SQLite, no TLS and relaxed rate limits.

    ``rc_invites`` (when given) replaces the relaxed invite limits verbatim, so sub-keys it
    leaves out (``per_room``, ``per_user``, ``per_issuer``) fall back to Synapse's defaults.
    ``extra_config`` is deep-merged over the generated homeserver config last.
    """

    name = "Synapse"

    def __init__(
        self,
        workdir: Path,
        *,
        server_name: str | None = None,
        port: int | None = None,
        rc_invites: dict | None = None,
        extra_config: dict | None = None,
        python: str | Path | None = None,
    ) -> None:
        super().__init__(workdir, port=port)
        self._fixed_server_name = server_name
        self.server_name: str = server_name or ""
        self.rc_invites = rc_invites
        self.extra_config = extra_config or {}
        self.python = str(python or os.environ.get("SYNAPSE_PYTHON") or DEFAULT_SYNAPSE_PYTHON)
        self.registration_shared_secret = secrets.token_hex(32)
        self._macaroon_secret_key = secrets.token_hex(32)
        self._form_secret = secrets.token_hex(32)
        self.config: dict[str, Any] = {}
        self._users: list[MatrixUser] = []

    # -- paths and config ------------------------------------------------------------------

    @property
    def ready_url(self) -> str:
        return f"{self.base_url}/_matrix/client/versions"

    @property
    def oidc_callback_url(self) -> str:
        """Where OIDC providers send users back to (``public_baseurl`` + the callback)."""
        return self.base_url + OIDC_CALLBACK_PATH

    @property
    def config_path(self) -> Path:
        return self.workdir / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        """Synapse's own log (INFO)."""
        return self.workdir / "homeserver.log"

    @property
    def process_log_path(self) -> Path:
        """stdout/stderr of the process (start-up errors before logging is set up)."""
        return self.workdir / "synapse.stdout.log"

    @property
    def signing_key_path(self) -> Path:
        return self.workdir / "signing.key"

    def build_config(self) -> dict[str, Any]:
        workdir = self.workdir
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "pid_file": str(workdir / "homeserver.pid"),
            "public_baseurl": self.base_url + "/",
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": [LOOPBACK],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [
                        {"names": ["client", "federation", "openid"], "compress": False}
                    ],
                }
            ],
            "database": {
                "name": "sqlite3",
                "args": {"database": str(workdir / "homeserver.db")},
            },
            "log_config": str(workdir / "log.config"),
            "media_store_path": str(workdir / "media_store"),
            "signing_key_path": str(self.signing_key_path),
            "registration_shared_secret": self.registration_shared_secret,
            "macaroon_secret_key": self._macaroon_secret_key,
            "form_secret": self._form_secret,
            "report_stats": False,
            "enable_registration": False,
            "enable_metrics": False,
            "url_preview_enabled": False,
            "suppress_key_server_warning": True,
            "trusted_key_servers": [],
            **copy.deepcopy(RELAXED_RATE_LIMITS),
        }
        if self.rc_invites is not None:
            config["rc_invites"] = copy.deepcopy(self.rc_invites)
        return deep_merge(config, self.extra_config)

    def _log_config(self) -> dict[str, Any]:
        return {
            "version": 1,
            "formatters": {
                "precise": {
                    "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                    "%(request)s - %(message)s"
                }
            },
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "precise",
                    "filename": str(self.log_path),
                    "encoding": "utf8",
                }
            },
            "loggers": {"synapse.storage.SQL": {"level": "INFO"}},
            "root": {"level": "INFO", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }

    def _configure(self) -> None:
        # The server name follows the port until the first start succeeded: the database
        # then belongs to that name, and later starts keep both.
        self.server_name = self._fixed_server_name or f"localhost:{self.port}"
        (self.workdir / "media_store").mkdir(exist_ok=True)
        if not self.signing_key_path.exists():
            # Synapse's key file format: "<algorithm> <version> <unpadded base64 seed>".
            seed = _unpadded_b64(secrets.token_bytes(32))
            self.signing_key_path.write_text(f"ed25519 a_{secrets.token_hex(2)} {seed}\n")
        # JSON is valid YAML: no YAML library needed.
        (self.workdir / "log.config").write_text(json.dumps(self._log_config(), indent=2))
        self.config = self.build_config()
        self.config_path.write_text(json.dumps(self.config, indent=2))

    def _command(self) -> tuple[list[str], Path]:
        argv = [self.python, "-m", "synapse.app.homeserver", "-c", str(self.config_path)]
        return argv, self.workdir

    async def _started(self) -> None:
        self._fixed_server_name = self.server_name

    async def _stopping(self) -> None:
        """Close the users' sessions."""
        for user in self._users:
            await user.close()
        self._users.clear()

    # -- users -----------------------------------------------------------------------------

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    async def register_user(
        self, localpart: str, password: str | None = None, admin: bool = False
    ) -> MatrixUser:
        """Register via the shared-secret admin API; returns the new, logged-in user.

        The user's aiohttp session is closed by ``stop()`` (or call ``user.close()``).
        """
        password = password or secrets.token_urlsafe(16)
        url = f"{self.base_url}/_synapse/admin/v1/register"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                nonce = (await resp.json())["nonce"]
            mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
            for part in (nonce, localpart, password):
                mac.update(part.encode())
                mac.update(b"\x00")
            mac.update(b"admin" if admin else b"notadmin")
            body = {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            }
            async with session.post(url, json=body) as resp:
                data = await resp.json(content_type=None)
                if resp.status >= 300:
                    raise MatrixRequestError("POST", url, resp.status, data)
        user = MatrixUser(
            self.base_url,
            data["user_id"],
            data["access_token"],
            data.get("device_id"),
            password=password,
        )
        self._users.append(user)
        return user

    async def login(self, localpart: str, password: str) -> MatrixUser:
        """A new device for an existing user; its session is closed by ``stop()`` too."""
        user = await MatrixUser.login(self.base_url, localpart, password)
        self._users.append(user)
        return user


def main() -> None:  # pragma: no cover - manual helper
    """``python -m devtools.synapse [workdir]``: run a Synapse until Ctrl-C."""
    import asyncio
    import tempfile

    logging.basicConfig(level=logging.INFO)
    workdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp("-synapse"))

    async def run() -> None:
        async with SynapseServer(workdir) as server:
            print(f"Synapse {server.server_name} at {server.base_url} (workdir {workdir})")
            print(f"registration_shared_secret: {server.registration_shared_secret}")
            await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
