"""Pack the plugin into a .mbp exactly as maubot's `mbc build` does, with only the stdlib.

    python3 devtools/pack_plugin.py [PLUGIN_DIR] [-o OUTPUT]   (or python3 -m devtools.pack_plugin)

OUTPUT is a file, or a directory (existing, or written with a trailing /) that gets
`<id>-v<version>.mbp`; the default is dist/, created if missing.
The path written is printed. `./build.sh` runs this, so building needs python3 and nothing
else: no venv, no maubot, no PyYAML.

What `mbc build` (maubot/cli/commands/build.py, maubot 0.6.0) does, and so this does:
- `maubot.yaml` in the archive is not the file itself but PluginMeta re-serialized by ruamel:
  every field in PluginMeta's order, defaults filled in, versions normalized. Here a small
  reader takes the flat keys and string lists maubot.yaml uses and a small writer renders them
  as ruamel would; anything outside that (nested maps, anchors, block scalars, a string whose
  rendering is not certain) stops the build with a message instead of guessing.
- each module: `<module>.py` if it is a file, else the whole directory tree as `os.walk` lists
  it (every file, __pycache__ and dotfiles included: mbc skips nothing) if it has an
  `__init__.py`, else a warning and nothing;
- each `extra_files` pattern through `glob.iglob` without `recursive=True`, so `**` matches one
  level like `*`, dotfiles are not matched, and a matched directory is stored as a directory
  entry;
- the same `zipfile` calls in the same order: stored, not compressed, names relative to the
  plugin directory.
"""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path
import re
import sys
import zipfile


class PackError(Exception):
    """maubot.yaml is invalid, or uses YAML this packer cannot render exactly as mbc would."""


# PluginMeta's fields in declaration order (maubot/loader/meta.py), which is the order mbc
# writes them. None: required, no default. The maubot default is the *installed* maubot's
# version in mbc, unknowable here, so this packer requires the key.
_STR, _VERSION, _BOOL, _LIST = "str", "version", "bool", "list"
FIELDS: tuple[tuple[str, str, object], ...] = (
    ("id", _STR, None),
    ("version", _VERSION, None),
    ("modules", _LIST, None),
    ("main_class", _STR, None),
    ("maubot", _VERSION, None),
    ("database", _BOOL, False),
    ("database_type", _STR, "sqlalchemy"),
    ("config", _BOOL, False),
    ("webapp", _BOOL, False),
    ("license", _STR, ""),
    ("extra_files", _LIST, []),
    ("dependencies", _LIST, []),
    ("soft_dependencies", _LIST, []),
)
_KINDS = {name: kind for name, kind, _ in FIELDS}

# --- reading maubot.yaml ------------------------------------------------------------------

_KEY_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):(?:[ ]+(.*))?")
_ITEM_LINE = re.compile(r"([ ]*)-(?:[ ]+(.*))?")
# ruamel's YAML 1.2 implicit resolvers (ruamel/yaml/resolver.py), each tried only on a plain
# scalar whose first character is one of its own: a string matching one is not a string.
_RESOLVERS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("bool", re.compile(r"true|True|TRUE|false|False|FALSE"), "tTfF"),
    (
        "float",
        re.compile(
            r"[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
            r"|[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)"
            r"|\.(?:nan|NaN|NAN)"
        ),
        "-+0123456789.",
    ),
    (
        "int",
        re.compile(r"[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9_]+|[-+]?0x[0-9a-fA-F_]+"),
        "-+0123456789",
    ),
    ("merge", re.compile(r"<<"), "<"),
    ("null", re.compile(r"~|null|Null|NULL|"), "~nN"),
    (
        "timestamp",
        re.compile(
            r"[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
            r"|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?"
            r"(?:[Tt]|[ \t]+)[0-9][0-9]?"
            r":[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?"
            r"(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?"
        ),
        "0123456789",
    ),
    ("value", re.compile(r"="), "="),
)


def _implicit_type(text: str) -> str:
    """What YAML 1.2 (ruamel) reads the plain scalar `text` as: "str", "bool", "int", ..."""
    if not text:
        return "null"
    for name, pattern, first in _RESOLVERS:
        if text[0] in first and pattern.fullmatch(text):
            return name
    return "str"


_NOT_PLAIN_START = set("[]{}&*!|>'\"%@`#,?:-")


class _NonString:
    """A plain scalar YAML reads as a number, null or timestamp: kept only to say so."""

    def __init__(self, text: str) -> None:
        self.text = text


def _scalar(text: str, where: str) -> object:
    """One scalar after `key: ` or `- `, its trailing comment dropped."""
    if text.startswith("'"):
        end = 1
        while True:
            end = text.find("'", end)
            if end < 0:
                raise PackError(f"{where}: unterminated '...' string")
            if text.startswith("''", end):
                end += 2
                continue
            break
        value, rest = text[1:end].replace("''", "'"), text[end + 1 :]
    elif text.startswith('"'):
        end = text.find('"', 1)
        if end < 0 or "\\" in text[:end]:
            raise PackError(f'{where}: only simple "..." strings (no escapes) are supported')
        value, rest = text[1:end], text[end + 1 :]
    else:
        value = re.split(r"[ \t]#", text, maxsplit=1)[0].strip()
        if value[:1] in _NOT_PLAIN_START or ": " in value or value.endswith(":"):
            raise PackError(f"{where}: unsupported YAML {value!r} (quote it)")
        kind = _implicit_type(value)
        if kind == "bool":
            return value in ("true", "True", "TRUE")
        return value if kind == "str" else _NonString(value)
    rest = rest.strip()
    if rest and not rest.startswith("#"):
        raise PackError(f"{where}: unexpected text after the quoted string: {rest!r}")
    return value


def read_meta_file(path: Path) -> dict[str, object]:
    """maubot.yaml's keys: only top-level `key: scalar`, `key: [a, b]` and `key:` + `- item`
    lists of scalars. Anything else is refused with the line it is on."""
    meta: dict[str, object] = {}
    current_list: list[object] | None = None
    list_indent: str | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        where = f"{path.name}:{number}"
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" in line:
            raise PackError(f"{where}: tabs are not supported")
        item = _ITEM_LINE.fullmatch(line)
        if item:
            if current_list is None:
                raise PackError(f"{where}: a list item with no `key:` line above it")
            if not item.group(2):
                raise PackError(f"{where}: nested or empty list items are not supported")
            if list_indent is None:
                list_indent = item.group(1)
            elif item.group(1) != list_indent:  # YAML would read it as part of the item above
                raise PackError(f"{where}: list items must line up")
            current_list.append(_scalar(item.group(2), where))
            continue
        key_line = _KEY_LINE.fullmatch(line)
        if not key_line:
            raise PackError(f"{where}: unsupported YAML (only flat keys and lists): {line!r}")
        key, text = key_line.group(1), (key_line.group(2) or "")
        if key in meta:
            raise PackError(f"{where}: duplicate key {key!r}")
        if key not in _KINDS:
            raise PackError(f"{where}: {key!r} is not a maubot.yaml key this packer knows")
        list_indent = None
        text_value = re.split(r"(?:^|[ \t])#", text, maxsplit=1)[0].strip()
        if not text_value:
            meta[key] = current_list = []
        elif text_value.startswith("[") and text_value.endswith("]"):
            inner = text_value[1:-1].strip()
            if any(c in inner for c in "[]{}'\"#"):
                raise PackError(f"{where}: only flow lists of plain words are supported")
            items = [item.strip() for item in inner.split(",")] if inner else []
            meta[key], current_list = [_scalar(item, where) for item in items], None
        else:
            meta[key], current_list = _scalar(text, where), None
    return meta


# PEP 440 versions already in their normal form, so str(packaging.version.Version(v)) == v.
_CANONICAL_VERSION = re.compile(
    r"(?:[1-9][0-9]*!)?(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*"
    r"(?:(?:a|b|rc)(?:0|[1-9][0-9]*))?(?:\.post(?:0|[1-9][0-9]*))?(?:\.dev(?:0|[1-9][0-9]*))?"
)


def plugin_meta(raw: dict[str, object]) -> dict[str, object]:
    """The fields of PluginMeta.deserialize(raw).serialize(), in order, checked."""
    meta: dict[str, object] = {}
    for name, kind, default in FIELDS:
        if name not in raw:
            if default is None:
                raise PackError(f"maubot.yaml: {name!r} is required")
            meta[name] = list(default) if isinstance(default, list) else default
            continue
        value = raw[name]
        if kind == _LIST:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PackError(f"maubot.yaml: {name!r} must be a list of strings")
        elif kind == _BOOL:
            if not isinstance(value, bool):
                raise PackError(f"maubot.yaml: {name!r} must be true or false")
        elif not isinstance(value, str):
            raise PackError(f"maubot.yaml: {name!r} must be a string (quote it)")
        elif kind == _VERSION and not _CANONICAL_VERSION.fullmatch(value):
            raise PackError(
                f"maubot.yaml: {name!r} {value!r} is not a version in normal form (like 1.2.0)"
            )
        meta[name] = value
    return meta


# --- writing maubot.yaml as ruamel does -------------------------------------------------------

# Strings ruamel writes plain: no YAML indicator at the start, nothing that would end or
# comment the scalar, a single space at most between words. Strings YAML would read as
# something else, or starting with an alias/anchor/tag/reserved indicator, it single-quotes.
# Anything outside these cases is refused rather than guessed.
_WORD_CHARS = r"\-A-Za-z0-9_./*+=<>~!@%^$(),;"
_PLAIN_TEXT = re.compile(rf"[A-Za-z_/][{_WORD_CHARS}]*(?: [{_WORD_CHARS}]+)*")
_QUOTED_TEXT = re.compile(rf"[{_WORD_CHARS}&]*")
_INDICATOR_START = set("*&!@%")
_WIDTH = 80  # past 80 columns ruamel folds the scalar or moves it to a line of its own


def _render_str(value: str, prefix: str) -> str:
    """`value` as ruamel's round-trip dumper writes it after `prefix` ("key: " or "- ")."""
    rendered = None
    if _implicit_type(value) != "str" or value[:1] in _INDICATOR_START:
        if _QUOTED_TEXT.fullmatch(value):
            rendered = f"'{value}'"
    elif _CANONICAL_VERSION.fullmatch(value) or _PLAIN_TEXT.fullmatch(value):  # 0.6.0, 1.0rc1
        rendered = value
    if rendered is not None and len(prefix) + len(rendered) <= _WIDTH:
        return rendered
    raise PackError(
        f"maubot.yaml: cannot be sure how mbc would write {value!r}; "
        "use plain words, or build with `mbc build`"
    )


def render_meta(meta: dict[str, object]) -> bytes:
    lines = []
    for name, kind, _ in FIELDS:
        value = meta[name]
        if kind == _BOOL:
            lines.append(f"{name}: {'true' if value else 'false'}")
        elif kind == _LIST:
            assert isinstance(value, list)
            if not value:
                lines.append(f"{name}: []")
            else:
                lines.append(f"{name}:")
                lines.extend(f"- {_render_str(item, '- ')}" for item in value)
        else:
            assert isinstance(value, str)
            lines.append(f"{name}: {_render_str(value, f'{name}: ')}")
    return ("\n".join(lines) + "\n").encode("utf-8")


# --- the archive ----------------------------------------------------------------------------


def load_meta(root: Path) -> dict[str, object]:
    path = root / "maubot.yaml"
    if not path.is_file():
        raise PackError(f"{path}: not found")
    return plugin_meta(read_meta_file(path))


def default_filename(meta: dict[str, object]) -> str:
    return f"{meta['id']}-v{meta['version']}.mbp"


def _write_plugin(zf: zipfile.ZipFile, root: str, meta: dict[str, object]) -> None:
    """mbc's write_plugin, with the plugin directory as `root` instead of the cwd: every
    path is looked up under root and stored under the name mbc would give it."""

    def add(name: str) -> None:
        zf.write(os.path.join(root, name), arcname=name)

    zf.writestr("maubot.yaml", render_meta(meta))
    for module in meta["modules"]:
        if os.path.isfile(os.path.join(root, f"{module}.py")):
            add(f"{module}.py")
        elif os.path.isdir(os.path.join(root, module)):
            if os.path.isfile(os.path.join(root, f"{module}/__init__.py")):
                for dirpath, _dirs, files in os.walk(os.path.join(root, module)):
                    rel = os.path.relpath(dirpath, root)
                    for file in files:
                        add(os.path.join(rel, file))
            else:
                print(f"Module {module} is missing __init__.py, skipping", file=sys.stderr)
        else:
            print(f"Module {module} not found, skipping", file=sys.stderr)
    for pattern in meta["extra_files"]:
        for file in glob.iglob(pattern, root_dir=root):
            add(file)


def build(root: Path, output: Path) -> Path:
    """Write the .mbp for the plugin in `root` to `output` (a file path, replaced)."""
    meta = load_meta(root)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)
    try:
        with zipfile.ZipFile(os.path.abspath(output), "w") as zf:
            _write_plugin(zf, str(root), meta)
    except BaseException:
        output.unlink(missing_ok=True)
        raise
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("path", nargs="?", default=".", help="plugin directory (default: .)")
    parser.add_argument("-o", "--output", help="output file, or directory (default: dist/)")
    args = parser.parse_args(argv)
    root = Path(args.path)
    try:
        meta = load_meta(root)
        output = Path(args.output or "dist")
        if args.output is None or args.output.endswith(("/", os.sep)) or output.is_dir():
            output = output / default_filename(meta)
        build(root, output)
    except PackError as e:
        print(f"Failed to build plugin: {e}", file=sys.stderr)
        return 1
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
