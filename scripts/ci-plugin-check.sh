#!/usr/bin/env bash
# The pytest plugin as CI users run it (docs/ci.md): a suite that fails on purpose, recorded with
# pytest --osrewind --osrewind-export; the session must fail as it would unrecorded (exit 1), and the
# failing test's run file must exist, be named in the JUnit XML and open on its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rc=0
$PY -m pytest -p no:cacheprovider -q --osrewind --osrewind-db "$work/db" --osrewind-export "$work/traces" \
    --junitxml "$work/junit.xml" tests/workloads/failing_suite.py || rc=$?
fail() { echo "ci-plugin-check: $*" >&2; exit 1; }
[ "$rc" -eq 1 ] || fail "the failing suite exited $rc under pytest --osrewind, not 1"
traces=("$work"/traces/*.osr)
[ "${#traces[@]}" -eq 1 ] && [ -f "${traces[0]}" ] || fail "expected one run file in $work/traces"
grep -qF "[[ATTACHMENT|${traces[0]}]]" "$work/junit.xml" || fail "the JUnit XML does not attach ${traces[0]}"
# each command's whole output first, then grep: `cmd | grep -q` under pipefail fails when grep has
# found its line and gone before cmd writes the rest (cmd then dies of EPIPE)
tests=$(XDG_CACHE_HOME="$work/cache" $PY -m osrewind tests "${traces[0]}" --failed --json) \
    || fail "osrewind tests could not read the run file"
grep -qF '"nodeid": "tests/workloads/failing_suite.py::test_reads_a_setting_that_is_not_there"' <<<"$tests" \
    || fail "the run file does not hold the failing test"
opens=$(XDG_CACHE_HOME="$work/cache" $PY -m osrewind events "${traces[0]}" \
    --test test_reads_a_setting_that_is_not_there --failed --kind open --json) \
    || fail "osrewind events could not read the run file"
grep -qF 'no-such-settings.conf' <<<"$opens" || fail "the failing open is not in the run file"
echo "ci-plugin-check: ok (a failing suite under pytest --osrewind: exit 1, its run file opens)"
