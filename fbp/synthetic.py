"""A small stand-in for SCUT-FBP5500: the release's exact layout, faces drawn so that their scores
show in the pixels, and so does how much the 60 raters disagree on each face (the spread of its
ratings). Smoke runs (FBP_SMOKE=1 without FBP_DATA_DIR) and the tests train on it; no real face
is in it. Run as a script to write one: python data/synthetic.py FOLDER [N]. It stands alone
(utils imports it for smoke runs, never the reverse), so it names the release's layout itself."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

DATASET_DIRNAME = "SCUT-FBP5500_v2"  # the release's folder, as utils looks for it
OLD_PREFIXES = {"AF": "fty", "AM": "mty", "CF": "ftw", "CM": "mtw"}  # the 2018 release's image names


def make_synthetic_dataset(folder: Path, n: int = 300, image_size: int = 96, seed: int = 0,
                           naming: str = "current", with_ratings: bool = True) -> Path:
    """Write a small dataset in the release's layout whose scores show in the pixels; its root
    (written beside it, then renamed: it exists only once whole)."""
    final = Path(folder) / DATASET_DIRNAME
    if final.is_dir():
        return final
    root = Path(folder) / f".partial-{DATASET_DIRNAME}"
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    counts = group_counts(n)
    names = [f"{group}{i}.jpg" for group, count in counts.items() for i in range(1, count + 1)]
    latent = np.clip(rng.normal(3.0, 0.7, len(names)), 1.2, 4.8)
    # How much the raters disagree on a face: their noise's SD, drawn from a stream of its own,
    # which leaves the main stream (latent scores, drawings' nuisances, splits) as it was.
    spread = np.random.default_rng([seed, SPREAD_STREAM]).uniform(*RATER_NOISE_SD, len(names))
    noise = rng.normal(0, 1, (len(names), 60)) * spread[:, None]
    ratings = np.clip(np.round(latent[:, None] + noise), 1, 5)
    scores = ratings.mean(axis=1)
    (root / "Images").mkdir(parents=True)
    for name, score, sd in zip(names, scores, spread, strict=True):
        synthetic_face(score, image_size, rng, spread=sd).save(root / "Images" / name, quality=90)
    written = names if naming == "current" else [OLD_PREFIXES[name[:2]] + name[2:] for name in names]
    write_protocols(root / "train_test_files", written, scores, rng)
    (root / "synthetic_framing.json").write_text(json.dumps(SYNTHETIC_FRAMING, indent=1))
    if with_ratings:
        rows = [(r + 1, name, int(v), int(v)) for i, name in enumerate(names)
                for r, v in enumerate(ratings[i])]
        pd.DataFrame(rows, columns=["Rater", "Filename", "Rating", "original Rating"]).to_excel(
            root / "All_Ratings.xlsx", index=False)
    root.rename(final)
    return final


# Where synthetic_face draws the eyes (fractions of the image): known by construction, since a
# face detector finds no face in these drawings. Used only for synthetic (smoke) datasets.
SYNTHETIC_FRAMING = {"eye_center_x": 0.5, "eye_center_y": 0.44, "eye_distance": 0.21,
                     "box_width": 0.48, "box_height": 0.6,
                     "note": "drawn geometry of the synthetic faces, not measured"}


# The raters' noise SD varies from face to face between these (mean 0.7, before rounding to whole
# points and clipping to 1-5); the face's mouth shows it: the wider the mouth, the more the raters
# disagree. A face's score shows in its brightness and eye size, independent of the mouth.
RATER_NOISE_SD = (0.35, 1.05)
MOUTH_RED = (220, 30, 40)  # redder than any skin (grey) or background (channels below 120)
SPREAD_STREAM = 1  # the spread's random stream, beside the dataset's seed


def group_counts(n: int) -> dict[str, int]:
    """Images per group in the release's proportions (2000:2000:750:750) for n images."""
    caucasian = round(n * 750 / 5500)
    return {"AF": (n - 2 * caucasian) // 2, "AM": n - 2 * caucasian - (n - 2 * caucasian) // 2,
            "CF": caucasian, "CM": caucasian}


def synthetic_face(score: float, size: int, rng: np.random.Generator, spread: float = 0.7):
    """A face-like picture whose brightness and eye size grow with the score, and whose red mouth
    widens with the raters' disagreement (spread, their noise SD within RATER_NOISE_SD)."""
    from PIL import Image, ImageDraw

    background = tuple(int(v) for v in rng.integers(0, 120, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    half = size * rng.uniform(0.27, 0.33)
    cx, cy = size / 2 + rng.uniform(-0.06, 0.06) * size, size / 2 + rng.uniform(-0.06, 0.06) * size
    level = 60 + 45 * (score - 1)
    tint = rng.integers(-12, 13, 3)
    skin = tuple(int(np.clip(level + t, 0, 255)) for t in tint)
    draw.ellipse([cx - half * 0.8, cy - half, cx + half * 0.8, cy + half], fill=skin)
    eye = half * (0.06 + 0.04 * (score - 1))
    for dx in (-0.35, 0.35):
        ex, ey = cx + dx * half, cy - 0.2 * half
        draw.ellipse([ex - eye, ey - eye, ex + eye, ey + eye], fill=(20, 20, 20))
    low, high = RATER_NOISE_SD
    mouth = half * (0.08 + 0.4 * np.clip((spread - low) / (high - low), 0, 1))
    draw.line([cx - mouth, cy + 0.5 * half, cx + mouth, cy + 0.5 * half],
              fill=MOUTH_RED, width=max(2, round(size * 0.045)))
    noise = rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


def write_protocols(folder: Path, names: list[str], scores: np.ndarray,
                    rng: np.random.Generator) -> None:
    """Write the release's label files: all labels, 5 cross-validation folds and the 60/40 split."""
    lines = np.array([f"{n} {s:.6f}" for n, s in zip(names, scores, strict=True)])
    order = rng.permutation(len(lines))
    folds = np.array_split(order, 5)
    cv = folder / "5_folders_cross_validations_files"
    for k, test in enumerate(folds, start=1):
        train = np.setdiff1d(order, test)
        write_lines(cv / f"cross_validation_{k}" / f"train_{k}.txt", lines[rng.permutation(train)])
        write_lines(cv / f"cross_validation_{k}" / f"test_{k}.txt", lines[test])
    cut = int(0.6 * len(lines))
    split = folder / "split_of_60%training and 40%testing"
    write_lines(split / "train.txt", lines[order[:cut]])
    write_lines(split / "test.txt", lines[order[cut:]])
    write_lines(folder / "All_labels.txt", lines)


def write_lines(path: Path, lines) -> None:
    """Write lines to a text file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    print(make_synthetic_dataset(Path(sys.argv[1]), n=int(sys.argv[2]) if len(sys.argv) > 2 else 300))
