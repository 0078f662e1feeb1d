#!/usr/bin/env bash
# scripts/deps.sh — install everything dcms needs to build, test, benchmark
# and fuzz on a fresh Debian 12 machine.
#
# Usage: scripts/deps.sh            (from any directory; no arguments)
#
# Idempotent and quick when nothing is missing: one dpkg-query call decides
# which Debian packages are absent, and only then are `apt-get update` and
# `apt-get install` run (as root, through sudo when not root). If package.json
# exists at the repo root, `npm ci` runs only when node_modules is out of date
# with package-lock.json (see below). Prints one summary line on stdout.
set -euo pipefail

# Debian packages. Add new ones here.
PACKAGES=(
    build-essential cmake ninja-build pkg-config
    clang libclang-rt-14-dev clang-format
    git curl ca-certificates
    libmicrohttpd-dev libjansson-dev libsqlite3-dev sqlite3 libpq-dev
    libssl-dev libsodium-dev libcmocka-dev libcbor-dev libcurl4-openssl-dev
    liboath-dev oathtool libseccomp-dev
    postgresql postgresql-client
    wrk nginx-light
    softhsm2 libp11-kit-dev
    python3 # training/check_model.py in unit.trainer.check_model_py
    time # /usr/bin/time: CPU seconds in bench/bench-datasets.sh
    libgnutls28-dev testssl.sh # HTTPS: the certificate callback; the TLS scan in tests/api/tls
    chromium chromium-headless-shell # tests/browser (driven by playwright-core from npm)
    zbar-tools # zbarimg: tests/browser/account.test.mjs decodes the TOTP QR code
)
# Added only when `node` or `npm` is not on PATH: a node installed from
# elsewhere (e.g. NodeSource, which ships its own npm) must not be replaced.
NODE_PACKAGES=(nodejs npm)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

wanted=("${PACKAGES[@]}")
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    wanted+=("${NODE_PACKAGES[@]}")
fi

# One dpkg-query call; packages dpkg has never heard of print nothing (and
# make dpkg-query exit 1), so compare by name rather than by line position.
declare -A installed=()
while IFS=$'\t' read -r pkg status; do
    [[ "$status" == "install ok installed" ]] && installed["$pkg"]=1
done < <(dpkg-query -W -f='${Package}\t${Status}\n' "${wanted[@]}" 2>/dev/null || true)

missing=()
for pkg in "${wanted[@]}"; do
    [[ -n "${installed[$pkg]:-}" ]] || missing+=("$pkg")
done

summary="deps: all present"
if ((${#missing[@]} > 0)); then
    sudo=()
    if ((EUID != 0)); then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "deps: not root and sudo is not available; install these as root:" >&2
            echo "  apt-get install ${missing[*]}" >&2
            exit 1
        fi
    fi
    echo "deps: installing ${missing[*]}" >&2
    "${sudo[@]}" apt-get update >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}" >&2
    summary="deps: installed ${#missing[@]} packages"
fi

# npm packages (only when the project has a package.json). npm's own
# node_modules/.package-lock.json never equals package-lock.json byte for byte
# (it leaves out the root package), so after a successful `npm ci` a copy of
# the lock file is kept in node_modules/.dcms-package-lock.json and compared.
if [[ -f "$ROOT/package.json" ]]; then
    stamp="$ROOT/node_modules/.dcms-package-lock.json"
    if [[ ! -f "$ROOT/node_modules/.package-lock.json" ]] ||
        ! cmp -s "$ROOT/package-lock.json" "$stamp"; then
        echo "deps: npm ci" >&2
        (cd "$ROOT" && npm ci --no-audit --no-fund >&2)
        cp "$ROOT/package-lock.json" "$stamp"
        summary+=", ran npm ci"
    fi
fi

echo "$summary"
