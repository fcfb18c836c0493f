#!/usr/bin/env bash
# Builds the notes extension (www/extension): the unpacked extension in out/extension/ (load
# it with chrome://extensions → "Load unpacked", or --load-extension) and the zip for the
# store, out/lmz-notes-VERSION.zip.
#
# The extension is a consumer of the npm package: the packed tarball that scripts/build-web.sh
# makes (out/lmz-VERSION.tgz; built first if missing) is installed into the build with npm,
# as any user would. The model pack is copied in (model/), so the extension runs offline with
# no remote code or data; --no-model leaves it out (a 99 MB smaller zip: the user then gives
# the model's URL on the notes page).
#
#   bash scripts/build-extension.sh [--no-model]
set -euo pipefail
cd "$(dirname "$0")/.."
with_model=1
for a in "$@"; do
    case "$a" in
        --no-model) with_model=0 ;;
        *) echo "usage: $0 [--no-model]" >&2; exit 2 ;;
    esac
done
pack="${LMZ_MODEL:-${LMZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lmz}/smollm2-135m.lmz.safetensors}"
version="$(node -p "require('./web/package.json').version")"
tarball="out/lmz-$version.tgz"
ext_version="$(node -p "require('./www/extension/manifest.json').version")"
zipfile="out/lmz-notes-$ext_version.zip"

[ -f "$tarball" ] || bash scripts/build-web.sh
if [ "$with_model" = 1 ] && [ ! -f "$pack" ]; then
    echo "no model pack at $pack: run \`lmz model fetch\` (scripts/run.sh does), or build with --no-model" >&2
    exit 1
fi

echo "== notes extension (out/extension: www/extension + $tarball installed$([ "$with_model" = 1 ] && echo ' + the model pack'))"
rm -rf out/extension "$zipfile"
mkdir -p out/extension
cp www/extension/manifest.json www/extension/package.json out/extension/
cp -r www/extension/src/. out/extension/
(cd out/extension && npm install -s --no-audit --no-fund --offline --no-package-lock "../lmz-$version.tgz")
# npm records the tarball in package.json; the store's copy needs neither file.
rm -f out/extension/package.json
if [ "$with_model" = 1 ]; then
    mkdir -p out/extension/model
    # A hard link when the cache is on the same file system (no 99 MB copy), else a copy.
    ln -f "$pack" out/extension/model/smollm2-135m.lmz.safetensors 2>/dev/null || cp "$pack" out/extension/model/
fi

echo "== zip for the store ($zipfile)"
# The model's 4-bit weights do not deflate; store them as they are.
(cd out/extension && zip -q -r -X -n .safetensors "../${zipfile#out/}" .)
printf '%s  %s bytes (unpacked: %s)\n' "$zipfile" "$(stat -c %s "$zipfile")" "$(du -sb out/extension | cut -f1)"
