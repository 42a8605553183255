"""Checks the Python packages maubot does not install for plugins."""

from __future__ import annotations

import importlib.util

from maubot import Plugin

# Import name -> PyPI name. Keep in step with maubot.yaml `dependencies`.
REQUIRED = {"dns": "dnspython"}


def missing_dependencies() -> list[str]:
    return [pypi for module, pypi in REQUIRED.items() if importlib.util.find_spec(module) is None]


def make_placeholder_plugin(missing: list[str]) -> type[Plugin]:
    message = (
        "thirdparty_invite needs these Python packages in maubot's environment: "
        f"{', '.join(missing)}. Install them with `pip install {' '.join(missing)}` "
        "(in the maubot container: `docker exec <container> pip install ...`) and restart "
        "maubot. See the README, 'Installing dependencies'."
    )

    class MissingDependencies(Plugin):
        async def start(self) -> None:
            self.log.error(message)
            raise RuntimeError(message)

    return MissingDependencies
