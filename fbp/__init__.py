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
