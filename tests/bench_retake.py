"""Benchmark (run by hand): how often a re-taken photo's score falls inside the span of the first
photo's six crops, as notebook 05 prints it, on synthetic faces scored by the smoke series' model.

    python tests/bench_retake.py

The smoke series (about 3 minutes on 2 cores) trains the model on synthetic faces. Then each of 300
synthetic identities is drawn twice, as two photos of one face: the same score, a new background,
position, size, tint and noise. Each photo is 480 px (its eyes about 100 px apart, as a selfie's are
after 05 shrinks it to 640 px for the detector), with its eyes where they were drawn (no detector), and
goes through 05's steps: three alignments (EYE_SHIFTS), their mirrors, the model, the span.
"""

import copy
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import utils  # noqa: E402
from fbp import experiments, faces, network, runs, scoring, synthetic  # noqa: E402

PHOTO_SIDE, IDENTITIES = 480, 300


def photo_of(score: float, seed: int):
    """A synthetic photo of a face with this score, and the face as a detector would give it (its eyes
    where synthetic_face drew them)."""
    rng = np.random.default_rng(seed)
    drawn = np.random.default_rng()
    drawn.bit_generator.state = copy.deepcopy(rng.bit_generator.state)  # replays synthetic_face's draws
    image = synthetic.synthetic_face(score, PHOTO_SIDE, rng)
    drawn.integers(0, 120, 3)
    half = PHOTO_SIDE * drawn.uniform(0.27, 0.33)
    cx, cy = (PHOTO_SIDE / 2 + drawn.uniform(-0.06, 0.06) * PHOTO_SIDE for _ in range(2))
    left, right = ((cx + dx * half, cy - 0.2 * half) for dx in (-0.35, 0.35))
    return image, faces._Face(box=(cx - 0.8 * half, cy - half, 1.6 * half, 2 * half), left_eye=left,
                              right_eye=right, confidence=1.0)


def six_crop_scores(model, image, face, framing: dict, size: int) -> np.ndarray:
    """Notebook 05's six crops of a face (three alignments, their mirrors), scored by the model."""
    aligned = np.stack([np.asarray(utils.align_face(image, utils.shifted_eyes(face, shift), framing, size))
                        for shift in utils.EYE_SHIFTS])
    return model.predict_on_batch(np.concatenate([aligned, aligned[:, :, ::-1]]))["score"][:, 0]


def main() -> None:
    """Train the smoke series' model, then measure how often a second photo's score lies in the
    first's span."""
    os.environ.update(FBP_SMOKE="1", FBP_WORK_DIR=tempfile.mkdtemp(prefix="retake-"))
    os.environ.pop("FBP_RUN", None)
    experiments.run_series()
    run = runs.current_run()
    model, framing, size = network.load_model(run.model_path()), run.record["framing"], run.config.image_size
    inside, widths = [], []
    for k, score in enumerate(np.random.default_rng(0).uniform(1.5, 4.5, IDENTITIES)):
        first = six_crop_scores(model, *photo_of(score, 2 * k), framing, size)
        again = six_crop_scores(model, *photo_of(score, 2 * k + 1), framing, size)
        low, high = scoring._crops_span(first[None])
        inside.append(low <= again.mean() <= high)
        widths.append(high - low)
    print(f"{run.describe()}\nA re-taken photo's score fell inside the first photo's span for "
          f"{np.mean(inside):.0%} of {IDENTITIES} synthetic faces; the span's median width was "
          f"{np.median(widths):.3f} score points.")


if __name__ == "__main__":
    main()
