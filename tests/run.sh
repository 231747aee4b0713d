#!/usr/bin/env bash
# The test command: `bash tests/run.sh [pytest arguments]` on a fresh machine.
#
# Creates .venv in the checkout (Python 3.11 or newer, from $PYTHON or python3), installs the
# project with its dev extra (again only when pyproject.toml changed), then runs pytest with the
# arguments given. Exit code: pytest's, except that "no tests collected" (5) is a failure (1).
# `bash tests/run.sh --setup-only` stops after the install (.ci/run uses it before linting).
# Tests that need PostgreSQL, MariaDB or promtool skip with the reason when those are missing,
# and fail instead when CI=true.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv=${CAREKPI_VENV:-$root/.venv}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "tests/run.sh: needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.11)" >&2
        exit 2
    fi
    echo "tests/run.sh: creating $venv"
    "$python" -m venv "$venv"
fi

# Reinstall only when the declared dependencies change; the install is editable, so code
# changes need none.
stamp="$venv/.carekpi-dev-install"
wanted=$(cat pyproject.toml tests/run.sh | sha256sum | cut -d' ' -f1)
# A plain `pip install .` (the demo's set-up) replaces the editable install with a copy that
# would go stale as the code changes: reinstall when kpis is not imported from this checkout.
here=$("$venv/bin/python" -I -c 'import kpis, os; print(os.path.dirname(os.path.dirname(kpis.__file__)))' \
       2>/dev/null || true)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ] || [ "$here" != "$root" ]; then
    echo "tests/run.sh: installing carekpi[dev] into $venv"
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    "$venv/bin/python" -m pip install --quiet -e '.[dev]'
    echo "$wanted" > "$stamp"
fi

if [ "${1:-}" = "--setup-only" ]; then
    exit 0
fi

status=0
"$venv/bin/python" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "tests/run.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$status"
