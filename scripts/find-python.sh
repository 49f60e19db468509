#!/usr/bin/env bash
# Print a working interpreter for Python X.Y (`scripts/find-python.sh 3.13`), or nothing.
# Looks for pythonX.Y on PATH, then pyenv's versions (a pyenv shim prints an error instead of running when
# that version is not selected, so every candidate is tried, not just found).
set -u
want=${1:?usage: find-python.sh X.Y}
for candidate in "$(command -v "python$want" 2>/dev/null)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want"*/bin/python3; do
  [ -n "$candidate" ] && [ -x "$candidate" ] || continue
  if [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then
    echo "$candidate"
    exit 0
  fi
done
exit 0
