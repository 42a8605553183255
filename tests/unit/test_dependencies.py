"""A missing plugin dependency is a clear message at start, not an import traceback."""

from __future__ import annotations

import logging
from pathlib import Path
import subprocess
import sys

import pytest

from thirdparty_invite import dependencies


def test_nothing_is_missing_here() -> None:
    assert dependencies.missing_dependencies() == []


async def test_missing_package_is_named_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(dependencies.REQUIRED, "no_such_module_xyz", "no-such-package")
    missing = dependencies.missing_dependencies()
    assert missing == ["no-such-package"]
    plugin_class = dependencies.make_placeholder_plugin(missing)
    plugin = plugin_class.__new__(plugin_class)  # start() needs only a logger
    plugin.log = logging.getLogger("test.deps")
    with pytest.raises(RuntimeError) as excinfo:
        await plugin.start()
    assert "pip install no-such-package" in str(excinfo.value)
    assert "pip install no-such-package" in caplog.text


# An interpreter where importing authlib or joserfc fails, as in maubot's container.
BLOCK_AUTHLIB = """
import sys
sys.modules['authlib'] = sys.modules['joserfc'] = None
"""


def test_the_plugin_imports_and_builds_without_authlib(tmp_path) -> None:
    """maubot's container has no authlib: every module must still import, and the
    provider registry must say what to install instead of raising."""
    root = Path(__file__).resolve().parents[2]
    script = BLOCK_AUTHLIB + "\n".join(
        [
            "import importlib, pkgutil, thirdparty_invite",
            "for m in pkgutil.walk_packages(thirdparty_invite.__path__, 'thirdparty_invite.'):",
            "    importlib.import_module(m.name)",
            "from thirdparty_invite.providers.registry import ProviderRegistry, ProviderSettings",
            "from thirdparty_invite.providers.registry import read_provider_settings",
            "problems = []",
            "s = read_provider_settings({'github': {'client_id': 'a', 'client_secret': 'b'}},"
            " problems)",
            "assert not problems, problems",
            "r = ProviderRegistry(s, None)",
            "assert r.all() == [] and 'pip install authlib' in r.unavailable, r.unavailable",
            "print('ok')",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
