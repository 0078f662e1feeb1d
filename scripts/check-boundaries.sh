#!/usr/bin/env bash
# Fails (exit 1, naming the files) when a C file under src/<folder>/ outside
# the HTTP layer includes dcms/http.h: only src/http/, src/sys/ and the
# services' *_http.c handler files may. Service logic and module headers
# take and return C structs; route handlers are declared in
# src/http/handlers.h, generated from routes.def.
#   scripts/check-boundaries.sh          check the tree
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
shopt -s nullglob
files=(src/*/*.c src/*/*.h)
bad=$(grep -l 'dcms/http.h' "${files[@]}" | grep -vE '^src/(http|sys)/|_http\.c$' || true)
if [ -n "$bad" ]; then
    echo "files outside src/http/, src/sys/ and *_http.c that include dcms/http.h:"
    echo "$bad"
    exit 1
fi
echo "dcms/http.h only in src/http/, src/sys/ and *_http.c (${#files[@]} files checked)"
