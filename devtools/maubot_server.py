"""Run a full maubot server (manager mode) on 127.0.0.1 and drive its management API."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import secrets
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import attrs

from devtools import json_api
from devtools.json_api import APIError
from devtools.matrix_user import MatrixUser
from devtools.ports import LOOPBACK, ManagedServer

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MAUBOT_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
API_PREFIX = "/_matrix/maubot/v1"


class MaubotAPIError(APIError):
    """A non-2xx answer from maubot's management API (``errcode`` as maubot names it)."""

    def __init__(self, method: str, path: str, status: int, body: Any):
        data = body if isinstance(body, dict) else {}
        detail = f"\n{data['stacktrace']}" if data.get("stacktrace") else ""
        super().__init__(method, path, status, body, detail)


class InstanceStartError(RuntimeError):
    """A plugin instance was created but did not start (reason in maubot's log)."""


@attrs.define
class AdminCredentials:
    username: str
    password: str


class MaubotServer(ManagedServer):
    """A maubot server in its own process group, its state in ``workdir``.

    ``plugin_postgres_url`` sets ``plugin_databases.postgres`` (e.g.
    ``postgresql://postgres@127.0.0.1:5432/test``) so instance databases become Postgres
    schemas; the main maubot database is always SQLite in ``workdir``.
    """

    name = "maubot"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        plugin_postgres_url: str | None = None,
        homeserver_url: str | None = None,
        python: str | Path | None = None,
    ) -> None:
        super().__init__(workdir, port=port)
        self.plugin_postgres_url = plugin_postgres_url
        self.homeserver_url = homeserver_url
        self.python = str(python or os.environ.get("MAUBOT_PYTHON") or DEFAULT_MAUBOT_PYTHON)
        self.admin = AdminCredentials("admin", secrets.token_urlsafe(18))
        self._unshared_secret = secrets.token_hex(32)
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None

    # -- paths and config ------------------------------------------------------------------

    @property
    def ready_url(self) -> str:
        return f"{self.api_url}/features"  # /version needs a token

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yaml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "maubot.log"

    @property
    def process_log_path(self) -> Path:
        return self.workdir / "maubot.stdout.log"

    def instance_url(self, instance_id: str) -> str:
        """Public web base of an instance, with a trailing slash."""
        return f"{self.base_url}/_matrix/maubot/plugin/{instance_id}/"

    def build_config(self) -> dict[str, Any]:
        wd = self.workdir
        homeservers = {}
        if self.homeserver_url:
            homeservers["local"] = {"url": self.homeserver_url, "secret": None}
        logger_file = {
            "class": "logging.FileHandler",
            "formatter": "normal",
            "filename": str(self.log_path),
            "encoding": "utf8",
        }
        return {
            "database": f"sqlite:{wd / 'maubot.db'}",
            "crypto_database": "default",
            "database_opts": {"min_size": 1, "max_size": 10},
            "plugin_directories": {
                "upload": str(wd / "plugins"),
                "load": [str(wd / "plugins")],
                "trash": str(wd / "trash"),
            },
            "plugin_databases": {
                "sqlite": str(wd / "plugin_dbs"),
                "postgres": self.plugin_postgres_url,
                "postgres_max_conns_per_plugin": 3,
                "postgres_opts": {},
            },
            "server": {
                "hostname": LOOPBACK,
                "port": self.port,
                "public_url": self.base_url,
                "ui_base_path": "/_matrix/maubot",
                "plugin_base_path": "/_matrix/maubot/plugin/",
                "override_resource_path": False,
                "unshared_secret": self._unshared_secret,
            },
            "homeservers": homeservers,
            # Plain text here; maubot bcrypts it on start and writes the hash back.
            "admins": {"root": "", self.admin.username: self.admin.password},
            "api_features": {
                name: True
                for name in (
                    "login plugin plugin_upload instance instance_database client "
                    "client_proxy client_auth dev_open log"
                ).split()
            },
            "logging": {
                "version": 1,
                "formatters": {
                    "normal": {"format": "[%(asctime)s] [%(levelname)s@%(name)s] %(message)s"}
                },
                "handlers": {"file": logger_file},
                "loggers": {
                    "maubot": {"level": "DEBUG"},
                    "mau": {"level": "DEBUG"},
                    "aiohttp": {"level": "INFO"},
                },
                "root": {"level": "DEBUG", "handlers": ["file"]},
            },
        }

    def _configure(self) -> None:
        for sub in ("plugins", "trash", "plugin_dbs"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        # JSON is valid YAML; maubot rewrites the file in its own style (and the admin
        # password as a bcrypt hash) on start, so every start writes it afresh.
        self.config_path.write_text(json.dumps(self.build_config(), indent=2))

    def _command(self) -> tuple[list[str], Path]:
        return [self.python, "-m", "maubot", "-c", str(self.config_path)], self.workdir

    async def _started(self) -> None:
        await self._login()

    async def _stopping(self) -> None:
        """Close the management API session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._token = None

    # -- management API --------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        return self._session

    async def _login(self) -> None:
        data = await self.api(
            "POST",
            "/auth/login",
            {"username": self.admin.username, "password": self.admin.password},
            auth=False,
        )
        self._token = data["token"]

    async def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Any:
        """Call ``/_matrix/maubot/v1{path}``; raises MaubotAPIError on non-2xx."""
        headers = {"Authorization": f"Bearer {self._token}"} if auth and self._token else {}
        kwargs: dict[str, Any] = {"params": params, "headers": headers}
        if data is not None:
            kwargs["data"] = data
        elif body is not None:
            kwargs["json"] = body
        status, payload, _ = await json_api.call(
            self.session, method, self.api_url + path, **kwargs
        )
        if status >= 300:
            raise MaubotAPIError(method, path, status, payload)
        return payload

    async def upload_plugin(self, mbp_path: Path | str, *, allow_override: bool = True) -> str:
        """Upload a .mbp; returns the plugin ID (replaces an existing version if allowed)."""
        content = await asyncio.to_thread(Path(mbp_path).read_bytes)
        params = {"allow_override": "true"} if allow_override else None
        result = await self.api("POST", "/plugins/upload", data=content, params=params)
        return str(result["id"])

    async def list_plugins(self) -> list[dict]:
        return list(await self.api("GET", "/plugins"))

    async def create_client(
        self,
        user: MatrixUser,
        homeserver_url: str | None = None,
        *,
        sync: bool = True,
        autojoin: bool = True,
        online: bool = True,
        displayname: str = "disable",
        avatar_url: str = "disable",
    ) -> dict:
        """Register ``user``'s session as a maubot client (maubot checks it with whoami).

        ``displayname``/``avatar_url`` "disable" leave the profile alone.
        """
        body = {
            "homeserver": homeserver_url or user.base_url,
            "access_token": user.access_token,
            "device_id": user.device_id,
            "enabled": True,
            "started": True,
            "sync": sync,
            "autojoin": autojoin,
            "online": online,
            "displayname": displayname,
            "avatar_url": avatar_url,
        }
        return await self.api("PUT", f"/client/{quote(user.user_id, safe='')}", body)

    async def list_clients(self) -> list[dict]:
        return list(await self.api("GET", "/clients"))

    async def get_client(self, user_id: str) -> dict:
        return await self.api("GET", f"/client/{quote(user_id, safe='')}")

    async def delete_client(self, user_id: str) -> None:
        await self.api("DELETE", f"/client/{quote(user_id, safe='')}")

    async def create_instance(
        self,
        instance_id: str,
        plugin_type: str,
        primary_user: MatrixUser | str,
        config_yaml: str = "",
        started: bool = True,
        *,
        start_timeout: float = 60.0,
    ) -> dict:
        """Create (or update) an instance; with ``started`` wait until it runs.

        Raises MaubotAPIError for API errors (``plugin_type_not_found``,
        ``primary_user_not_found``, ...) and InstanceStartError with the log tail when the
        plugin did not start.
        """
        user_id = primary_user if isinstance(primary_user, str) else primary_user.user_id
        body = {
            "type": plugin_type,
            "primary_user": user_id,
            "config": config_yaml,
            "enabled": True,
            "started": started,
        }
        path = f"/instance/{quote(instance_id, safe='')}"
        try:
            info = await self.api("PUT", path, body)
        except MaubotAPIError as e:
            e.args = (f"{e.args[0]}\n--- maubot log tail ---\n{self.log_tail(40)}",)
            raise
        if not started:
            # Creating always starts the instance; stop it again if asked to.
            if info.get("started"):
                info = await self.set_instance_started(instance_id, False)
            return info
        deadline = time.monotonic() + start_timeout
        while not info.get("started"):
            # maubot starts the instance inside the PUT and sets enabled=false when the
            # plugin's start() raised: no point in waiting then.
            if not info.get("enabled", True) or time.monotonic() > deadline:
                raise InstanceStartError(
                    f"instance {instance_id} ({plugin_type}) did not start: {info}\n"
                    f"--- maubot log tail ---\n{self.log_tail()}"
                )
            await asyncio.sleep(0.2)
            info = await self.get_instance(instance_id)
        return info

    async def get_instance(self, instance_id: str) -> dict:
        return await self.api("GET", f"/instance/{quote(instance_id, safe='')}")

    async def list_instances(self) -> list[dict]:
        return list(await self.api("GET", "/instances"))

    async def set_instance_started(self, instance_id: str, started: bool) -> dict:
        """Start/stop an instance. Starting also re-enables it: maubot disables an instance
        whose start() raised, and a disabled instance silently refuses to start."""
        path = f"/instance/{quote(instance_id, safe='')}"
        body = {"enabled": True, "started": True} if started else {"started": False}
        return await self.api("PUT", path, body)

    async def set_instance_config(self, instance_id: str, config_yaml: str) -> dict:
        """Replace an instance's config (maubot calls the plugin's on_external_config_update)."""
        path = f"/instance/{quote(instance_id, safe='')}"
        return await self.api("PUT", path, {"config": config_yaml})

    async def delete_instance(self, instance_id: str) -> None:
        await self.api("DELETE", f"/instance/{quote(instance_id, safe='')}")
