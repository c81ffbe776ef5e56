#!/usr/bin/env bash
# `npm test`'s pretest step: what the tests need beyond `npm install`, got here so that the README's
# two commands work on a fresh machine (and CI, which only calls them, tests what a user runs).
#   - Python's moto 5 (the AWS emulator the integration tests start) and cfn-lint: shipped on the
#     machine image; PyPI is not reachable here, so a missing one stops the run with one line.
#   - Debian's chromium (the drill report is rendered headless): installed with apt-get when it is
#     missing and we are root (or have password-less sudo); otherwise one line says what to install.
# Each failure is one line on stderr naming what is missing and how to get it; exit 1.
set -euo pipefail

fail() {
  echo "npm test: $*" >&2
  exit 1
}

# local/moto.ts starts the emulator with $MOTO_PYTHON (default python3): check that interpreter.
python="${MOTO_PYTHON:-python3}"
"$python" -c 'import moto, werkzeug, flask; assert int(moto.__version__.split(".")[0]) == 5' 2>/dev/null ||
  fail "needs Python's moto[server] 5 (the AWS emulator) for $python: pip install 'moto[server]>=5,<6'"
command -v cfn-lint >/dev/null || fail "needs cfn-lint on PATH: pip install cfn-lint"

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  if [ -n "${CHROMIUM:-}" ]; then
    fail "CHROMIUM=$CHROMIUM is not an executable; unset it to use Debian's /usr/bin/chromium"
  fi
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      fail "needs Debian's chromium for the drill report test: sudo apt-get install -y chromium (or set CHROMIUM=/path/to/chromium)"
    fi
  fi
  command -v apt-get >/dev/null ||
    fail "needs a headless Chromium at /usr/bin/chromium (or CHROMIUM=/path/to/chromium); no apt-get here to install it"
  echo "npm test: installing Debian's chromium (the drill report is rendered headless; once per machine)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine may have no package lists yet: try as is, then after an update.
  $sudo apt-get install -y -q chromium >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null 2>&1 &&
      $sudo apt-get install -y -q chromium >/dev/null 2>&1
  } || fail "could not install chromium with apt-get; install it by hand: apt-get install -y chromium"
  [ -x "$chromium" ] || fail "apt-get installed chromium but $chromium is missing; set CHROMIUM=/path/to/chromium"
fi
