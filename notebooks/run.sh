#!/usr/bin/env bash
# Set up and run the notebook series headless (the README's first command): notebooks 01 to 05 in
# order, each in a kernel of its own, with the FBP_* settings of this shell (FBP_SMOKE=1: the tiny
# offline run). The executed notebooks are kept in the work folder's executed/ folder, TensorFlow's
# start-up log beside them (series.log), and the run's headline figures and results table are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r requirements-dev.txt
log="$(mktemp -t fbp-series-XXXXXX.log)"
if .venv/bin/python -c "import sys, utils; sys.exit(utils.run_series(sys.argv[1]))" "$log" 2>"$log"; then
    exit 0
fi
echo "The series stopped. The last lines of its log ($log):"
tail -n 25 "$log"
exit 1
