#!/usr/bin/env bash
# Fails (exit 1, naming file:line) on any call of a function that
# include/dcms/banned.h bans, in every C file under src/, workload/ and cli/,
# whether or not the file includes banned.h (a file that does not, or that
# #undefs a name, would otherwise slip through). The list is read from
# banned.h itself, so a name added there is checked here too.
#   scripts/check-banned.sh          check the tree
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
names=$(sed -nE 's/^#define ([a-z_0-9]+)\(.*DCMS_BANNED\(.*/\1/p' include/dcms/banned.h | sort -u)
[ -n "$names" ] || { echo "check-banned: no names found in include/dcms/banned.h" >&2; exit 1; }
re="(^|[^A-Za-z0-9_.>])($(paste -sd'|' <<<"$names"))[[:space:]]*\\("
mapfile -t files < <(git ls-files -- 'src/*.c' 'src/*.h' 'workload/*.c' 'workload/*.h' 'cli/*.c' 'cli/*.h' 2>/dev/null ||
    find src workload cli -name '*.[ch]')
# Comments and string literals are not calls: drop them before matching.
hits=$(for f in "${files[@]}"; do
    sed -E 's://.*$::; s:/\*.*\*/::g; s:"([^"\\]|\\.)*"::g' "$f" | grep -nE "$re" | sed "s|^|$f:|" || true
done)
if [ -n "$hits" ]; then
    echo "banned calls (see include/dcms/banned.h):"
    echo "$hits"
    exit 1
fi
echo "no banned calls in ${#files[@]} files ($(paste -sd' ' <<<"$names"))"
