#!/usr/bin/env bash
# Run the README's five-minute tour as written, in a scratch folder (about 2 CPU-minutes).
# Usage: bash scripts/check_readme.sh        (VENV=path as for scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
VENV="$(cd "$VENV" && pwd)"   # absolute, whether VENV was given relative or absolute
export PATH="$VENV/bin:$PATH"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# The tour is the bash block that follows "## Five minutes on your own data".
awk '/^## Five minutes on your own data/{on=1} on&&/^```bash/{grab=1; next} grab&&/^```/{exit} grab' README.md \
    | grep -v '^source ' > "$WORK/tour.sh"
echo "check_readme: running the tour in $WORK:" >&2
cat "$WORK/tour.sh" >&2
(cd "$WORK" && bash -euo pipefail tour.sh)
echo "check_readme: the tour ran as written" >&2
