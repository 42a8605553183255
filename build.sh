#!/usr/bin/env bash
# Builds dist/<id>-v<version>.mbp with maubot's own packer (mbc build).
set -euo pipefail
cd "$(dirname "$0")"
MBC="${MBC:-.venv/bin/mbc}"
[ -x "$MBC" ] || MBC=mbc
id=$(sed -n 's/^id: *//p' maubot.yaml)
version=$(sed -n 's/^version: *//p' maubot.yaml)
mkdir -p dist
out="dist/${id}-v${version}.mbp"
rm -f "$out"
"$MBC" build -o "$out" .
echo "$out"
