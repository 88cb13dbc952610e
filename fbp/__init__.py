"""The plumbing of the SCUT-FBP5500 notebook series, one module per step the data takes.

errors (what a user can fix) < environment (Colab, Drive, the work folder, files written whole) <
dataset (the release, labels, protocols, ratings, tf.data) < evaluation (metrics, intervals, groups,
the published table) < settings (a run's settings and the backbones) < network (layers, presets,
precision, the feature cache, contribution maps) < faces (a photo to a framed face; uploads, webcam)
< runs (a Run: its folder, stage, models, evaluation; saves and resuming) < scoring (a face's
score, percentile and shares) < web (a run's files for the phone page: ONNX models, web.json; `python
-m fbp.web`, whose command alone opens bundles) < bundles (a run in one file: made, fetched, opened,
published) < experiments (the series, protocol and ablation runners and their statistics; `python -m
fbp.experiments`). Each module imports only those before it.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter out of notebooks
# TensorFlow's oneDNN CPU kernels corrupt the heap in some broadcast batch products
# (tensorflow/tensorflow#117700 and #123109; TF 2.20 and 2.21 both crash on #117700's example): a
# SigLIP2 fine-tune on the CPU died in 3 of 9 runs here on TF 2.20, 1 of 10 on 2.21, and once in CI.
# TensorFlow's own kernels instead, unless the user chose (tests/README.md, "oneDNN", has the cost); a
# GPU's are not oneDNN's.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
