"""Benchmark (run by hand): one 12 MP phone photo from file to score and contribution map on the
CPU, after warm-up, detection included, by the steps of notebook 05.

    python tests/bench_photo.py
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from conftest import model_from_notebook  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

import utils  # noqa: E402
from fbp import runs  # noqa: E402

FRAMING = {"eye_center_x": 0.5, "eye_center_y": 0.42, "eye_distance": 0.27}


def twelve_megapixel_photo(folder: Path) -> Path:
    """A 4000x3000 JPEG with a face, stored sideways with an EXIF rotation, like a phone's."""
    canvas = Image.new("RGB", (4000, 3000), (90, 110, 130))
    canvas.paste(Image.fromarray(data.astronaut()).resize((1800, 1800)), (1100, 600))
    noise = np.random.default_rng(0).normal(0, 8, (3000, 4000, 3))
    canvas = Image.fromarray(np.clip(np.asarray(canvas) + noise, 0, 255).astype("uint8"))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = folder / "phone.jpg"
    canvas.transpose(Image.Transpose.ROTATE_90).save(path, quality=92, exif=exif)
    return path


def score(model: keras.Model, path: Path, reference: runs.Reference) -> tuple[float, float, float, float]:
    """Notebook 05's steps for the first face: read, detect, six crops, predict, map; seconds to read,
    to detect, to align and in all."""
    t0 = time.perf_counter()
    image = utils.read_photo(path)
    t1 = time.perf_counter()
    face = utils.detect_faces(image)[0]
    t2 = time.perf_counter()
    size = model.input_shape[1]
    aligned = np.stack([np.asarray(utils.align_face(image, utils.shifted_eyes(face, shift), FRAMING, size))
                        for shift in utils.EYE_SHIFTS])
    t3 = time.perf_counter()
    six = np.concatenate([aligned, aligned[:, :, ::-1]])
    model.predict_on_batch(six)
    utils.contribution_maps(model, six[:1], reference.mean_features)
    return t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t0


def main(repeats: int = 5) -> None:
    keras.utils.set_random_seed(0)
    model = model_from_notebook(350)
    predicted = np.linspace(1, 5, 1100)
    reference = runs.Reference(predicted, predicted, np.zeros(2048), 1.0, "bench")
    with tempfile.TemporaryDirectory() as folder:
        path = twelve_megapixel_photo(Path(folder))
        print(f"photo: {path.stat().st_size / 1e6:.1f} MB, 4000x3000, EXIF-rotated")
        score(model, path, reference)  # warm-up
        timings = [score(model, path, reference) for _ in range(repeats)]
        read, detect, align, total = zip(*timings, strict=True)
        print(f"file to score, {2 * len(utils.EYE_SHIFTS)} crops (alignments and mirrors) and the "
              f"contribution map: median {statistics.median(total):.2f} s over {repeats} runs "
              f"(read and rotate {statistics.median(read):.2f} s, detect {statistics.median(detect):.2f} s, "
              f"align the three crops {statistics.median(align):.2f} s)")


if __name__ == "__main__":
    main()
