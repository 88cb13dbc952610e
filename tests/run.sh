#!/usr/bin/env bash
# Set up and run the tests (the README's test command; .ci/run runs it in a fresh clone):
# the whole suite on the newest versions in .venv, then the tests that touch TensorFlow, Keras and
# ipywidgets, the raters' distribution, and the data and evaluation tests (gdown, scipy), again in
# .venv-colab, pinned to the versions Colab ships (requirements-colab.txt);
# there the notebooks run as test_colab.py runs them, as a Colab user does, 04's protocols and ablation off.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r requirements-dev.txt
.venv/bin/python -m pytest
python3 -m venv .venv-colab
.venv-colab/bin/pip install -q --upgrade pip
.venv-colab/bin/pip install -q -r requirements-dev.txt -c requirements-colab.txt
# Within CI's time: test_colab runs the notebooks; of the kill tests, the one whose resume re-runs a
# checkpointed epoch (the others differ only in where the same callbacks stop); not the
# shuffled-labels check (a leak of labels into the pipeline does not depend on the version).
.venv-colab/bin/python -m pytest tests/test_faces.py tests/test_model.py tests/test_training.py \
    tests/test_runs.py tests/test_recipe.py tests/test_colab.py tests/test_notebook_use.py \
    tests/test_data.py tests/test_evaluation.py tests/test_distribution.py \
    -k "not shuffled_labels and not killed_before_checkpoint and not killed_during_checkpoint"
