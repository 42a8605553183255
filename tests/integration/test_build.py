"""`./build.sh` on a fresh clone, with python3 and nothing else, gives the .mbp maubot loads;
devtools/pack_plugin.py (what build.sh runs) writes the same archive as maubot's `mbc build`.

Fast (no servers), so not marked integration.
"""

from __future__ import annotations

from io import BytesIO
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile

from maubot.loader import PluginMeta
from maubot.loader.abc import PluginLoader
from maubot.loader.zip import ZippedPluginLoader
import pytest
from ruamel.yaml import YAML

from devtools import pack_plugin

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "thirdparty_invite"
# No venv, no mbc, no pip-installed tools: the machine an operator builds on.
BARE_PATH = "/usr/bin:/bin"


def _git(*args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], check=True, capture_output=True
    ).stdout


def _fresh_clone(dest: Path) -> Path:
    """The files a fresh clone of this repo has, in `dest`.

    On a clean tree (CI's fresh clone) that is `git archive HEAD`, exactly what a clone or a
    release tarball holds. With uncommitted work HEAD would test old code, and stashing is not
    an option while others work in the tree, so then it is the files the next commit would
    hold: tracked plus untracked-but-not-ignored (`git ls-files --cached --others
    --exclude-standard`), copied. Either way no ignored file (.venv, dist, __pycache__) comes
    along."""
    try:
        dirty = _git("status", "--porcelain").strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no clone to build from")
    dest.mkdir()
    if not dirty:
        archive = _git("archive", "--format=tar", "HEAD")
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
        return dest
    listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.decode().split("\0")):
        source = REPO_ROOT / name
        if not source.is_file():  # deleted in the work tree, not yet from the index
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest / name, follow_symlinks=False)
    return dest


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _fresh_clone(tmp_path_factory.mktemp("build") / "clone")


@pytest.fixture(scope="module")
def built(clone: Path) -> Path:
    """./build.sh run in the clone as an operator would: python3 on PATH, nothing else."""
    assert shutil.which("mbc", path=BARE_PATH) is None, "mbc is on the bare PATH"
    assert shutil.which("python3", path=BARE_PATH), "no python3 on the bare PATH"
    result = subprocess.run(
        ["./build.sh"],
        cwd=clone,
        env={"PATH": BARE_PATH, "HOME": str(clone.parent), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    meta = pack_plugin.load_meta(clone)
    printed = result.stdout.strip()
    assert printed == f"dist/{meta['id']}-v{meta['version']}.mbp"
    return clone / printed


def test_build_sh_on_fresh_clone_needs_only_python3(clone: Path, built: Path) -> None:
    assert zipfile.is_zipfile(built)
    with zipfile.ZipFile(built) as zf:
        assert zf.testzip() is None
        names = set(zf.namelist())
        license_text = zf.read("LICENSE")
    # The package as it is in the tree (subpackages included), not a hard-coded list.
    python_files = {p.relative_to(clone).as_posix() for p in (clone / PACKAGE).rglob("*.py")}
    web_files = {p.relative_to(clone).as_posix() for p in (clone / "web").rglob("*")}
    assert f"{PACKAGE}/__init__.py" in python_files
    expected = {"maubot.yaml", "base-config.yaml", "LICENSE", "web/invite.html"}
    assert expected | python_files | web_files <= names
    assert license_text == (clone / "LICENSE").read_bytes()
    assert b"GNU AFFERO GENERAL PUBLIC LICENSE" in license_text
    assert b"Version 3, 19 November 2007" in license_text


def test_maubot_loads_the_built_plugin(clone: Path, built: Path) -> None:
    """maubot's own loader: maubot.yaml validates as PluginMeta, the main class is found in the
    main module and every module imports from the zip (its pre-load checks)."""
    yaml = YAML()
    source_meta = PluginMeta.deserialize(yaml.load((clone / "maubot.yaml").read_text()))
    plugin_id, version, _ = ZippedPluginLoader.verify_meta(str(built))
    assert (plugin_id, version) == (source_meta.id, source_meta.version)
    path = os.path.abspath(built)
    try:
        loader = ZippedPluginLoader(path)
        assert loader.meta == source_meta
        assert loader.main_class == source_meta.main_class
    finally:  # the loader registers itself process-wide; leave no trace for other tests
        ZippedPluginLoader.path_cache.pop(path, None)
        PluginLoader.id_cache.pop(source_meta.id, None)


def _mbc_build(plugin_dir: Path, output: Path) -> Path:
    """maubot's own packer, `mbc build`, from the test venv."""
    subprocess.run(
        [sys.executable, "-m", "maubot.cli", "build", "-o", str(output), str(plugin_dir)],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    assert output.is_file()
    return output


def _assert_same_archive(ours: Path, theirs: Path) -> None:
    with zipfile.ZipFile(ours) as a, zipfile.ZipFile(theirs) as b:
        assert a.namelist() == b.namelist()  # same members, in the same order
        for info in a.infolist():
            other = b.getinfo(info.filename)
            assert a.read(info) == b.read(other), info.filename
            assert (info.compress_type, info.external_attr, info.file_size) == (
                other.compress_type,
                other.external_attr,
                other.file_size,
            ), info.filename


def test_packer_writes_what_mbc_writes(clone: Path, built: Path, tmp_path: Path) -> None:
    _assert_same_archive(built, _mbc_build(clone, tmp_path / "mbc.mbp"))


def test_packer_matches_mbc_on_file_selection_corners(tmp_path: Path) -> None:
    """The corners of mbc's selection: __pycache__ and dotfiles inside a module are packed,
    `**` without recursive=True matches one level only, dotfiles are not globbed, a globbed
    directory becomes a directory entry, a single-file module, a module without __init__.py
    and a missing one are skipped."""
    plugin = tmp_path / "plugin"
    files = {
        "pkg/__init__.py": "from .sub.mod import Main\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/mod.py": "class Main: ...\n",
        "pkg/__pycache__/x.cpython-311.pyc": "bytecode",
        "pkg/.hidden": "dot",
        "single.py": "X = 1\n",
        "noinit/mod.py": "",
        "web/a.html": "a",
        "web/.dot": "dot",
        "web/sub/b.js": "b",
        "web/sub/deeper/c.css": "c",
        "web/empty/.keep": "",
        "NOTICE.txt": "n",
        "extra.txt": "e",
    }
    for name, text in files.items():
        (plugin / name).parent.mkdir(parents=True, exist_ok=True)
        (plugin / name).write_text(text)
    (plugin / "maubot.yaml").write_text(
        textwrap.dedent(
            """\
            maubot: 0.1.0  # a comment
            id: test.corners
            version: 1.2.3
            modules: [single, pkg, noinit, missing]
            main_class: pkg/Main
            extra_files:
              - web/*
              - web/**/*
              - '*.txt'
            """
        )
    )
    ours = pack_plugin.build(plugin, tmp_path / "ours.mbp")
    _assert_same_archive(ours, _mbc_build(plugin, tmp_path / "mbc.mbp"))
    with zipfile.ZipFile(ours) as zf:
        names = zf.namelist()
    assert "pkg/__pycache__/x.cpython-311.pyc" in names
    assert "web/sub/" in names
    assert "web/sub/deeper/c.css" not in names
    assert "web/.dot" not in names
    assert not any(n.startswith(("noinit", "missing")) for n in names)


def _maubot_rendering(text: str) -> bytes:
    """maubot.yaml as mbc puts it in the archive: PluginMeta re-serialized by ruamel."""
    yaml = YAML()
    out = BytesIO()
    yaml.dump(PluginMeta.deserialize(yaml.load(text)).serialize(), out)
    return out.getvalue()


META_HEAD = "maubot: 0.6.0\nid: x.y\nmodules: [m]\nmain_class: M\n"


@pytest.mark.parametrize(
    "text",
    [
        META_HEAD + "version: 0.1.0\n",
        META_HEAD + "version: '1.0'\nlicense: ''\ndatabase: true\ndatabase_type: asyncpg\n",
        META_HEAD + 'version: "2"\nconfig: True\nwebapp: false # no\ndependencies: []\n',
        META_HEAD + "version: 1.0.0rc1\nlicense: AGPL-3.0-or-later\n"
        "dependencies:\n- aiohttp>=3,<4\n- foo ~= 1.0\n- '1.5'\n- 'true'\n- yes\n"
        "soft_dependencies:\n    - \"null\"\n    - '*x'\nextra_files:\n- web/**/*\n",
        (REPO_ROOT / "maubot.yaml").read_text(),
    ],
)
def test_maubot_yaml_rendered_as_mbc_renders_it(tmp_path: Path, text: str) -> None:
    (tmp_path / "maubot.yaml").write_text(text)
    ours = pack_plugin.render_meta(pack_plugin.load_meta(tmp_path))
    assert ours == _maubot_rendering(text)


@pytest.mark.parametrize(
    "text",
    [
        META_HEAD + "version: 1.0\n",  # a float to YAML: maubot rejects it too
        META_HEAD + "version: 01.0.0\n",  # not normal form: maubot would rewrite it
        META_HEAD,  # no version
        META_HEAD + "version: 1.0.0\nextra: 1\n",  # unknown key
        META_HEAD + "version: 1.0.0\nlicense: &a MIT\n",  # anchor
        META_HEAD + "version: 1.0.0\nlicense: |\n  MIT\n",  # block scalar
        META_HEAD + "version: 1.0.0\nlicense:\n  spdx: MIT\n",  # nested mapping
        META_HEAD + "version: 1.0.0\ndatabase: yes\n",  # a string to YAML 1.2, not a bool
        META_HEAD + "version: 1.0.0\nlicense: 'it''s: complicated'\n",  # rendering unsure
        META_HEAD + "version: 1.0.0\nversion: 1.0.1\n",  # duplicate key
        META_HEAD + "version: 1.0.0\ndependencies:\n- a\n  - b\n",  # YAML reads "a - b"
    ],
)
def test_maubot_yaml_beyond_the_reader_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "maubot.yaml").write_text(text)
    with pytest.raises(pack_plugin.PackError):
        pack_plugin.render_meta(pack_plugin.load_meta(tmp_path))
