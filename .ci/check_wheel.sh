#!/usr/bin/env bash
# CI: install mdq as a user does, from a wheel, and run it away from the checkout.
# Builds the wheel, installs it with its dependencies into a fresh venv outside the checkout,
# then from another directory, with MDQ_HOME in a temporary folder, runs `mdq demo` (which loads
# the shipped sample files and runs the shipped dbt project) and `mdq check` (exit 0 or 1 with
# findings, never 2), and checks that nothing was written into the installed package.
# Takes a few minutes (every dependency is installed again); tests/integration/test_wheel.py
# covers the same with this checkout's dependencies inside `make test`.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
as_of="2026-08-06T15:00:00Z"

work="$(mktemp -d "${TMPDIR:-/tmp}/mdq-wheel-ci.XXXXXX")"
chmod 755 "$work"  # as root, the embedded PostgreSQL runs as user pgserver and must reach it
export MDQ_HOME="$work/home"
unset MDQ_DATABASE_URL PREFECT_API_URL DBT_TARGET_PATH DBT_LOG_PATH PYTHONPATH
cleanup() {
    "$work/venv/bin/mdq" db stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "check_wheel: FAILED: $*" >&2; exit 1; }

start=$SECONDS
echo "check_wheel: building the wheel"
"$python" -m pip wheel "$repo" --no-deps --quiet -w "$work/dist"
wheel=("$work"/dist/mdq-*.whl)
echo "check_wheel: fresh venv in $work/venv, pip install ${wheel[0]##*/} -c constraints.txt"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet -c "$repo/constraints.txt" "${wheel[0]}"
echo "check_wheel: installed in $((SECONDS - start)) s"

mkdir "$work/elsewhere"
cd "$work/elsewhere"  # away from the checkout, whose mdq/ would be importable from its root
site="$("$work/venv/bin/python" -c 'import mdq, pathlib; print(pathlib.Path(mdq.__file__).parent)')"
case "$site" in "$work/venv/"*) ;; *) fail "mdq imported from $site, not the fresh venv" ;; esac
test -f "$site/_project/dbt_project/dbt_project.yml" || fail "the wheel lacks the dbt project"
test -f "$site/_project/profiles.yml" || fail "the wheel lacks profiles.yml"
touch "$work/installed.stamp"

echo "check_wheel: mdq demo from $PWD"
"$work/venv/bin/mdq" demo --as-of "$as_of" >"$work/demo.out" 2>"$work/demo.err" \
    || { tail -n 30 "$work/demo.err" >&2; fail "mdq demo exited $?"; }
grep -q "BTCUSD/1h: completed, fetched 20111, inserted 20111" "$work/demo.out" \
    || fail "mdq demo did not load the shipped BTCUSD file"
grep -q "data in $MDQ_HOME/pgdata" "$work/demo.out" || fail "mdq demo used another database"
tail -n 12 "$work/demo.out"

echo "check_wheel: mdq check from $PWD"
set +e
"$work/venv/bin/mdq" check --as-of "$as_of" >"$work/check.out" 2>"$work/check.err"
status=$?
set -e
tail -n 3 "$work/check.out"
[ "$status" -eq 0 ] || [ "$status" -eq 1 ] \
    || { tail -n 30 "$work/check.err" >&2; fail "mdq check exited $status (could not run)"; }
grep -q "anomalies: 0 new, " "$work/check.out" || fail "mdq check did not re-see the demo's findings"

test -f "$MDQ_HOME/dbt/target/run_results.json" || fail "dbt's target is not under MDQ_HOME"
written="$(find "$site" -newer "$work/installed.stamp" -not -path '*__pycache__*' -print)"
[ -z "$written" ] || fail "written into the installed package: $written"
[ -z "$(ls -A "$work/elsewhere")" ] || fail "written into the working directory"
echo "check_wheel: ok (mdq check exit $status) in $((SECONDS - start)) s"
