#!/usr/bin/env bash
# Checks tinv's layering (docs/DEVELOPING.md): every #include "dir/file.h" in src/ points to the
# same folder or to a folder on a LOWER floor, and no files include each other in a circle.
# Usage: scripts/check_layers.sh [SRC_DIR]    (exit 1 and one line per offence when broken)
set -euo pipefail
SRC="${1:-$(dirname "$0")/../src}"
# Floors, bottom (0) to top. Folders on one floor may not include each other.
declare -A FLOOR=(
  [common]=0 [io]=1 [nn]=2 [text]=3 [schedulers]=3 [models]=4 [world]=5 [pipelines]=6
  [inversion]=7 [apps]=8 [parity]=8 [cli]=9 [api]=9
)
# The public header include/tinv/tinv.h is the api floor's own header.
PUBLIC_HEADERS=tinv
bad=0
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
while IFS= read -r file; do
  rel="${file#"$SRC"/}"
  dir="${rel%%/*}"
  [ "$rel" = "$dir" ] && continue  # src/pch.h
  if [ -z "${FLOOR[$dir]+x}" ]; then
    echo "check_layers: src/$rel: folder '$dir' has no floor (add it to scripts/check_layers.sh)"
    bad=1; continue
  fi
  while IFS= read -r inc; do
    to="${inc%%/*}"
    [ "$inc" = "$to" ] && continue
    [ "$to" = "$PUBLIC_HEADERS" ] && to=api
    if [ -z "${FLOOR[$to]+x}" ]; then
      echo "check_layers: src/$rel includes \"$inc\": unknown folder '$to'"; bad=1; continue
    fi
    if [ "$to" != "$dir" ] && [ "${FLOOR[$to]}" -ge "${FLOOR[$dir]}" ]; then
      echo "check_layers: src/$rel (floor ${FLOOR[$dir]}, $dir) includes \"$inc\" (floor ${FLOOR[$to]}, $to): the arrow does not run down"
      bad=1
    fi
    echo "$rel $inc" >> "$edges"  # the include graph, file by file
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
done < <(find "$SRC" -type f \( -name '*.h' -o -name '*.cpp' \) | sort)
if ! tsort "$edges" > /dev/null 2> "$edges.err"; then
  grep -v 'input contains a loop' "$edges.err" | sed 's/^tsort: /check_layers: circle through src\//'
  bad=1
fi
rm -f "$edges.err"
if [ "$bad" = 0 ]; then echo "check_layers: every include runs down or stays in its folder, no circles"; fi
exit "$bad"
