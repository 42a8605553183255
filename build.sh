#!/usr/bin/env bash
# Builds dist/<id>-v<version>.mbp and prints its path. Needs only python3 (3.10+): the
# stdlib packer devtools/pack_plugin.py writes the archive exactly as maubot's `mbc build`
# does (tests/integration/test_build.py checks both agree), so no venv and no mbc.
set -euo pipefail
cd "$(dirname "$0")"
exec "${PYTHON:-python3}" devtools/pack_plugin.py --output dist/ .
