"""A missing plugin dependency is a clear message at start, not an import traceback."""

from __future__ import annotations

import logging

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
