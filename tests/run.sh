#!/usr/bin/env bash
# Run every test binary in $1/tests (default build/tests). Each binary prints
# PASS/FAIL lines; a binary that crashes or exits non-zero without a FAIL line
# counts as one failure. Ends with "N passed, N failed".
set -u
build=${1:-build}
cd "$(dirname "$0")/.." || exit 1
export LINA_TEST_DATA=${LINA_TEST_DATA:-$PWD/tests/data}
export LINA_SHARED=${LINA_SHARED:-$(cd .. && pwd)/shared}
passed=0 failed=0 failed_names=()
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    start=$(date +%s%N)
    out=$("$t" 2>&1); rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    p=$(grep -c '^PASS ' <<<"$out"); f=$(grep -c '^FAIL ' <<<"$out")
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; out+=$'\n'"FAIL $name: exited with status $rc"; fi
    passed=$((passed + p)); failed=$((failed + f))
    printf '%-32s %4d passed %4d failed  %6d ms\n' "$name" "$p" "$f" "$ms"
    if [ "$f" -gt 0 ]; then grep -E '^FAIL |error|Sanitizer|runtime error' <<<"$out" | head -40; failed_names+=("$name"); fi
done
[ ${#failed_names[@]} -gt 0 ] && echo "failing binaries: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
