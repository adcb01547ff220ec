#!/usr/bin/env bash
# THE test command (CI and the README use it):
#   scripts/test.sh [pytest args...]
# bootstrap -> start the local stack -> promtool, ruff check, ruff format --check, mypy,
# lint-imports (the layers contract in pyproject.toml), pytest.
# Every check runs even after one failed (one run shows all problems); the exit code is the
# first failure's. The stack is stopped at the end only if this script started it, so a
# developer's running stack survives. pytest's exit 5 (no tests collected) is a failure: CI
# must run tests.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/bootstrap.sh || exit $?

started_stack=0
if ! scripts/stack.sh status >/dev/null 2>&1; then
    started_stack=1
    trap 'scripts/stack.sh stop' EXIT
fi
scripts/stack.sh start || exit $?

first_rc=0
step() {
    local name="$1" rc
    shift
    echo "== $name"
    "$@"
    rc=$?
    if ((rc != 0)); then
        echo "== $name FAILED (exit $rc)"
        ((first_rc == 0)) && first_rc=$rc
    fi
}

export PATH="$ROOT/.venv/bin:$PATH"
step "promtool check config" promtool check config --syntax-only config/prometheus.yml
step "ruff check" ruff check .
step "ruff format --check" ruff format --check .
step "mypy" mypy
step "import layers" lint-imports
# The slowest tests are listed: the suite must stay well under 20 minutes of CI.
if (($# == 0)); then
    # Two lanes: the tests without servers spread over every core (pytest-xdist), then the
    # integration tests one at a time: they share the stack's broker and Redis, one restarts the
    # broker, and their timing bounds (sessions, readiness) assume no second test beside them.
    step "pytest: unit, doctests, memory-store contracts" pytest -m "not integration" -n auto --durations=10
    step "pytest: integration" pytest -m integration --durations=25
else
    step "pytest" pytest --durations=25 "$@"
fi

if ((first_rc != 0)); then
    echo "== FAILED (first failure exit code $first_rc)"
else
    echo "== all checks passed"
fi
exit "$first_rc"
