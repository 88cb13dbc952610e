"""The notebooks' one import: a short door into the fbp package, which holds the plumbing.

Each name below is one a notebook uses, imported from the module that holds it: one module per
step the data takes, each importing only those above it. `pip install -e .` (or the set-up cell
in Colab) installs both.
"""
# isort: skip_file
# ruff: noqa: F401

# errors: the problems a user can fix, each said plainly
from fbp.errors import PhotoError

# environment: Colab or local, Google Drive, the work folder, files written whole
from fbp.environment import (
    describe_runtime, flush_drive, mount_drive, one_fold_of_a_protocol, read_json, save_json,
    show_errors_plainly, smoke_mode, start, work_dir
)

# dataset: the SCUT-FBP5500 release: download, labels, protocols, ratings, tf.data
from fbp.dataset import (
    GROUP_NAMES, PROTOCOLS, RATINGS, add_rating_shares, dataset_fingerprint, find_or_fetch_dataset,
    human_agreement_path, load_protocol, make_dataset, percentile_of, read_ratings, targets,
    validate_dataset
)

# evaluation: metrics with confidence intervals, groups, folds, the published results
from fbp.evaluation import (
    ON_VALIDATION, bootstrap_metrics, group_gap_note, group_gaps, published_results, regression_metrics
)

# settings: a run's settings (Config) and the backbones the recipe knows
from fbp.settings import BACKBONES, Config, FOUNDATIONS, fine_tunes

# network: the model's own layers, keras-hub presets, precision, the feature cache
from fbp.network import (
    ClassToken, ImageNetPreprocess, InferenceBatchNormalization, RatingShares, backbone_of,
    cached_features, check_fine_tunes, compile_arguments, contribution_maps, precision_policy,
    predict_scores, selection_loss, small_foundation, use_precision, with_inference_batchnorm
)

# faces: from a photo to a face framed like the dataset's; uploads and the webcam
from fbp.faces import (
    EYE_SHIFTS, PhotoFace, align_face, ask_for_photos, check_face_size, detect_faces, framing_for,
    min_eye_distance, read_photo, shifted_eyes, take_webcam_photo
)

# runs: a run (its folder, settings, stage, models, evaluation, reference), resuming after a lost VM
from fbp.runs import (
    BestCheckpoint, EpochBackup, EpochLog, Run, current_run, history_frame, open_run,
    plain_out_of_memory, read_history, restore_training
)

# scoring: a face's score, its percentile among the dataset's faces, the raters' shares
from fbp.scoring import (
    FaceScore, NO_MAP, accuracy_note, calibrated_percentile, describe_references, describe_shares,
    score_face, scorers, shares_against_score
)

# web: a run's web files, for the phone page that scores a face in a browser
from fbp.web import export_web

# bundles: a trained run in one file: made, fetched, opened, published
from fbp.bundles import hub_login, make_bundle, publish_bundle, run_to_score

# experiments: the series, the protocols and the ablation as runners, and their statistics
from fbp.experiments import (
    ablation_family, ablation_verdict, as_markdown, check_space, results_table, run_ablation, run_protocol,
    run_series, switched_on
)
