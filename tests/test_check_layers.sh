#!/usr/bin/env bash
# scripts/check_layers.sh must fail on a tree with an upward include and a circle, naming both,
# and pass on a tree whose includes run down.
set -uo pipefail
check="$1"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir -p "$d/bad/io" "$d/bad/models" "$d/good/io" "$d/good/models"
echo '#include "models/x.h"' > "$d/bad/io/a.h"
echo '#include "models/y.h"' > "$d/bad/models/x.h"
echo '#include "models/x.h"' > "$d/bad/models/y.h"
echo '#include "io/a.h"' > "$d/good/models/x.h"
echo '#include <vector>' > "$d/good/io/a.h"
out=$("$check" "$d/bad"); rc=$?
echo "$out"
[ "$rc" = 1 ] || { echo "FAIL: exit $rc on the bad tree"; exit 1; }
grep -q 'src/io/a.h (floor 1, io) includes "models/x.h" (floor 4, models)' <<< "$out" ||
  { echo "FAIL: upward include not reported"; exit 1; }
grep -q 'circle through src/models/x.h' <<< "$out" || { echo "FAIL: circle not reported"; exit 1; }
"$check" "$d/good" || { echo "FAIL: the good tree was refused"; exit 1; }
echo PASS
