#!/usr/bin/env bash
# Checks that the C++ sources follow .clang-format (docs/DEVELOPING.md, "Conventions").
# Usage: scripts/check_format.sh [ROOT]   (ROOT holds .clang-format and src/, include/, tests/,
# bench/, examples/, fuzz/). Exit 1 and one line per misformatted file; exit 77 (ctest: skipped)
# when clang-format is missing (the Debian 13 root of check_libtorch2.sh) or is not version 14,
# the one the layout is pinned to (other versions format a few constructs differently).
set -euo pipefail
ROOT="${1:-$(dirname "$0")/..}"
CF="${CLANG_FORMAT:-clang-format}"
if ! command -v "$CF" > /dev/null; then
  echo "check_format: skipped: $CF not found (scripts/setup.sh installs clang-format)" >&2
  exit 77
fi
version=$("$CF" --version | sed -nE 's/.*version ([0-9]+)\..*/\1/p')
if [ "$version" != 14 ]; then
  echo "check_format: skipped: $CF is version ${version:-unknown}, the layout is pinned to 14" >&2
  exit 77
fi
[ -f "$ROOT/.clang-format" ] || { echo "check_format: $ROOT/.clang-format: missing" >&2; exit 1; }
bad=0
while IFS= read -r -d '' f; do
  if ! "$CF" --style=file --dry-run --Werror "$f" > /dev/null 2>&1; then
    echo "check_format: ${f#"$ROOT"/}: not formatted (run: clang-format -i ${f#"$ROOT"/})"
    bad=1
  fi
done < <(cd "$ROOT" && find src include tests bench examples fuzz -type f \( -name '*.cpp' -o -name '*.h' \) \
           -print0 2> /dev/null | sed -z "s|^|$ROOT/|" | sort -z)
exit $bad
