#!/usr/bin/env bash
# What `make test` needs beyond the virtualenv, installed from Debian when it is missing:
#   php-cli   runs our callback signatures the way Laravel computes them (tests/callbacks/test_signatures.py)
#   chromium  Debian's browser, which Playwright drives on the staff pages (tests/browser/; never a downloaded one)
# As root (or with password-less sudo) it runs apt-get; otherwise it stops at once with the one command to run,
# rather than letting those tests fail minutes later.
set -euo pipefail

missing=()
command -v php >/dev/null || missing+=(php-cli)
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
[ -x "$chromium" ] || command -v "$chromium" >/dev/null || missing+=(chromium)
[ "${#missing[@]}" -eq 0 ] && exit 0

install="apt-get update && apt-get install -y ${missing[*]}"
if ! command -v apt-get >/dev/null; then
  echo "make test needs ${missing[*]} and this machine has no apt-get: install them, then run make test again." >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "make test needs ${missing[*]}: run 'sudo sh -c \"$install\"' (or as root), then make test again." >&2
  exit 1
fi
echo "make test: installing ${missing[*]} with apt-get (once)"
"${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}"
