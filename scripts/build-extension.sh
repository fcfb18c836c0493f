#!/usr/bin/env bash
# Builds the notes extension (www/extension): the unpacked extension (out/extension/; load it
# with chrome://extensions → "Load unpacked", or --load-extension) and the zip for the store
# next to it (out/lmz-notes-VERSION.zip).
#
# The extension is a consumer of the npm package: the packed tarball that scripts/build-web.sh
# makes (out/lmz-VERSION.tgz; built first if missing) is installed into the build with npm,
# as any user would. The model pack is copied in (model/), so the extension runs offline with
# no remote code or data. --no-model leaves it out (a 99 MB smaller zip, named
# lmz-notes-VERSION-no-model.zip): the user then gives the model's URL under "Model" in the
# popup, the model is downloaded once, SHA-256-checked and kept in Cache Storage.
#
#   bash scripts/build-extension.sh [--no-model] [--out DIR]
#     --out DIR   the unpacked extension goes to DIR (default out/extension; emptied first),
#                 the zip next to it (in DIR's parent)
set -euo pipefail
cd "$(dirname "$0")/.."
with_model=1
dest=out/extension
while [ $# -gt 0 ]; do
    case "$1" in
        --no-model) with_model=0 ;;
        --out) [ $# -ge 2 ] || { echo "--out needs a directory" >&2; exit 2; }; dest="${2%/}"; shift ;;
        *) echo "usage: $0 [--no-model] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done
case "$dest" in ''|/|.|..) echo "--out $dest: give a directory of its own (it is emptied)" >&2; exit 2 ;; esac
pack="${LMZ_MODEL:-${LMZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lmz}/smollm2-135m.lmz.safetensors}"
version="$(node -p "require('./web/package.json').version")"
tarball="$PWD/out/lmz-$version.tgz"
ext_version="$(node -p "require('./www/extension/manifest.json').version")"
zipfile="$(dirname "$dest")/lmz-notes-$ext_version$([ "$with_model" = 1 ] || echo -no-model).zip"

[ -f "$tarball" ] || bash scripts/build-web.sh
if [ "$with_model" = 1 ] && [ ! -f "$pack" ]; then
    echo "no model pack at $pack: run \`lmz model fetch\` (scripts/run.sh does), or build with --no-model" >&2
    exit 1
fi

echo "== notes extension ($dest: www/extension + ${tarball#"$PWD"/} installed$([ "$with_model" = 1 ] && echo ' + the model pack' || echo ', no model'))"
rm -rf "$dest" "$zipfile"
mkdir -p "$dest"
cp www/extension/manifest.json www/extension/package.json "$dest"/
cp -r www/extension/src/. "$dest"/
(cd "$dest" && npm install -s --no-audit --no-fund --offline --no-package-lock "$tarball")
# npm records the tarball in package.json; the store's copy needs neither file.
rm -f "$dest"/package.json
if [ "$with_model" = 1 ]; then
    mkdir -p "$dest"/model
    # A hard link when the cache is on the same file system (no 99 MB copy), else a copy.
    ln -f "$pack" "$dest"/model/smollm2-135m.lmz.safetensors 2>/dev/null || cp "$pack" "$dest"/model/
else
    # config.js says whether model/ exists (the source's copy says it does).
    sed -i 's/^export const PACKAGED_MODEL = true;$/export const PACKAGED_MODEL = false;/' "$dest"/config.js
    grep -qx 'export const PACKAGED_MODEL = false;' "$dest"/config.js || { echo "config.js: PACKAGED_MODEL not found" >&2; exit 1; }
fi

echo "== zip for the store ($zipfile)"
# The model's 4-bit weights do not deflate; store them as they are.
zipabs="$(cd "$(dirname "$zipfile")" && pwd)/$(basename "$zipfile")"
(cd "$dest" && zip -q -r -X -n .safetensors "$zipabs" .)
printf '%s  %s bytes (unpacked: %s)\n' "$zipfile" "$(stat -c %s "$zipfile")" "$(du -sb "$dest" | cut -f1)"
