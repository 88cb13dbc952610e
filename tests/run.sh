#!/usr/bin/env bash
# Set up and run the tests (the README's test command; .ci/run runs it in a fresh clone), in two
# environments at once, each with one smoke series (tests/README.md, "CI time"):
# - .venv, the newest versions: every file but test_colab_series.py and test_drive.py (Drive is Colab's:
#   its stand-in is tested there, which evens the two halves); its series is test_notebooks.py's,
#   run as the README's first command runs it;
# - .venv-colab, Colab's versions (requirements-colab.txt; Python 3.13 where this machine has it): the
#   files that touch TensorFlow, Keras and ipywidgets, the data and evaluation tests; its series is
#   test_colab_series.py's, run as a Colab user runs it.
# Each kill test runs once: the real SIGKILL and two worst moments on Colab's versions, the third on
# the newest; the setting changed in 02 on Colab's (the two halves take about as long).
# On the newest, notebook 04's ablation runner trains EfficientNetV2S (test_notebooks.py), so
# test_training.py trains it only on Colab's. The logs are printed when both are done.
set -euo pipefail
cd "$(dirname "$0")/.."
logs="$(mktemp -d)"
# The two halves run at once: TensorFlow's thread pools get half the cores each (one on CI's two), so
# that no more threads run than cores (tests/bench_threads.py measured no clear gain either way:
# tests/README.md, "Threads"). Notebook kernels and runner processes inherit it.
threads=$(( $(nproc) / 2 > 1 ? $(nproc) / 2 : 1 ))
export TF_NUM_INTRAOP_THREADS="${TF_NUM_INTRAOP_THREADS:-$threads}"
export TF_NUM_INTEROP_THREADS="${TF_NUM_INTEROP_THREADS:-$threads}"

# The phone page, while the environments install: its npm packages (package-lock.json's), built,
# linted and its logic tested with node; the browser tests (test_notebooks.py, test_web.py) drive
# Debian's chromium, which .ci/run installs.
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build && npm run --silent lint \
    && npm test --silent) > "$logs/web.log" 2>&1 &
page=$!

# Both environments install at once, so that both halves start together and end about together.
colab_python=python3  # Colab's Python 3.13 where this machine has one (pyenv's, or on the PATH)
for candidate in python3.13 "$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3; do
    if "$candidate" -c "" 2>/dev/null; then colab_python="$candidate"; break; fi
done
(python3 -m venv .venv && .venv/bin/pip install -q --upgrade pip \
    && .venv/bin/pip install -q -r requirements-dev.txt) > "$logs/install-newest.log" 2>&1 &
install_newest=$!
("$colab_python" -m venv .venv-colab && .venv-colab/bin/pip install -q --upgrade pip \
    && .venv-colab/bin/pip install -q -r requirements-dev.txt -c requirements-colab.txt) \
    > "$logs/install-colab.log" 2>&1 &
install_colab=$!
wait "$install_newest" || { cat "$logs/install-newest.log"; exit 1; }
wait "$page" || { cat "$logs/web.log"; exit 1; }
# test_web.py in a process of its own: by the end of the others this one holds over 10 GB, and the
# page's conversions and browser on top ran the machine (24 GB, both halves) out of memory once.
{ .venv/bin/python -m pytest -p no:cacheprovider --durations=10 --junitxml="$logs/newest.xml" \
    --ignore=tests/test_colab_series.py --ignore=tests/test_drive.py --ignore=tests/test_web.py \
    -k "not killed_fine_tune and not killed_during_checkpoint and not killed_before_backup" \
    --deselect "tests/test_training.py::test_a_modern_backbone_trains_both_stages_and_records_its_cost[EfficientNetV2S]" \
    && .venv/bin/python -m pytest -p no:cacheprovider --junitxml="$logs/newest-web.xml" tests/test_web.py; \
} > "$logs/newest.log" 2>&1 &
newest=$!

wait "$install_colab" || { cat "$logs/install-colab.log"; kill "$newest"; exit 1; }
colab=0
.venv-colab/bin/python -m pytest -p no:cacheprovider --durations=10 --junitxml="$logs/colab.xml" \
    tests/test_colab.py tests/test_colab_series.py tests/test_notebook_use.py tests/test_faces.py tests/test_model.py \
    tests/test_training.py tests/test_runs.py tests/test_recipe.py tests/test_data.py \
    tests/test_evaluation.py tests/test_distribution.py tests/test_bundles.py tests/test_foundation.py \
    tests/test_settings.py tests/test_web.py tests/test_drive.py \
    -k "not shuffled_labels and not killed_before_checkpoint and not equally_good_recipes and not familys_level and not fold_1_claims" \
    > "$logs/colab.log" 2>&1 || colab=$?
wait "$newest" && status=0 || status=$?

echo "Each test's time is in the JUnit reports in $logs."
echo "=== The newest versions (.venv) ==="
cat "$logs/newest.log"
echo "=== Colab's versions (.venv-colab) ==="
cat "$logs/colab.log"
[ "$status" -eq 0 ] && [ "$colab" -eq 0 ]
