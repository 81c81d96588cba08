#!/usr/bin/env bash
# scripts/check_format.sh must fail on a tree with a misformatted file, naming it, and pass on a
# formatted one. Usage: test_check_format.sh CHECK_SCRIPT CLANG_FORMAT_FILE
set -uo pipefail
check="$1"
style="$2"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir -p "$d/bad/src/io" "$d/good/src/io"
cp "$style" "$d/bad/.clang-format"
cp "$style" "$d/good/.clang-format"
printf 'int  f( int x ){\nreturn x;}\n' > "$d/bad/src/io/a.cpp"
printf 'int f(int x) { return x; }\n' > "$d/good/src/io/a.cpp"
out=$("$check" "$d/bad"); rc=$?
echo "$out"
[ "$rc" = 77 ] && { echo "SKIP: clang-format is not version 14"; exit 77; }
[ "$rc" = 1 ] || { echo "FAIL: exit $rc on the bad tree"; exit 1; }
grep -q 'src/io/a.cpp: not formatted' <<< "$out" || { echo "FAIL: the file was not named"; exit 1; }
"$check" "$d/good" || { echo "FAIL: the formatted tree was refused"; exit 1; }
echo PASS
