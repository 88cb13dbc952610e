"""Writes the fixtures of the page's node tests (web/test/fixtures/*.json): what Pillow, TensorFlow, the
mtcnn package and fbp compute on small inputs, for the JavaScript ports in web/src to match.

Run from the repository: .venv/bin/python web/test/make_fixtures.py
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import tensorflow as tf
from PIL import Image

from fbp import dataset, faces, scoring
from fbp.errors import PhotoError

FIXTURES = Path(__file__).parent / "fixtures"
FRAMING = {"eye_center_x": 0.5, "eye_center_y": 0.38, "eye_distance": 0.21}


def encoded(array: np.ndarray) -> str:
    """An array's bytes (uint8, or float32 little-endian) in base64."""
    assert array.dtype in (np.uint8, np.float32)
    return base64.b64encode(
        np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    ).decode()


def image_json(pixels: np.ndarray) -> dict:
    """An RGB image as the tests read it: width, height and its bytes in base64."""
    return {"width": pixels.shape[1], "height": pixels.shape[0], "data": encoded(pixels)}


def noise(width: int, height: int, seed: int, low: int = 0) -> np.ndarray:
    """Random RGB pixels from low to 255."""
    return np.random.default_rng(seed).integers(low, 256, (height, width, 3), dtype=np.uint8)


def procedural(width: int, height: int) -> np.ndarray:
    """An image the tests draw too (helpers.mjs procedural): dark stripes, three bright noisy squares."""
    y, x, c = np.mgrid[0:height, 0:width, 0:3]
    dark = (x * 7 + y * 3 + c * 29) % 100
    bright = 155 + (x * y * 31 + c * 17) % 101
    inside = np.zeros((height, width, 3), bool)
    for cx, cy, half in (
        (width * 3 // 10, height * 4 // 10, width // 16),
        (width * 7 // 10, height // 2, width // 12),
        (width // 2, height * 3 // 4, width // 20),
    ):
        inside |= (abs(x - cx) < half) & (abs(y - cy) < half)
    return np.where(inside, bright, dark).astype(np.uint8)


IMAGES = {
    "noise40": noise(40, 40, 0),
    "gradient20x17": (np.mgrid[0:17, 0:20, 0:3].sum(0) * 6 % 256).astype(np.uint8),
    "noise97x61": noise(97, 61, 1),
    "bright64x48": noise(64, 48, 2, low=100),
}
FILTERS = {"bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def resized(name: str, size: tuple[int, int], flt: str, box=None, gap=None) -> dict:
    """One PIL resize case and its bytes."""
    out = Image.fromarray(IMAGES[name]).resize(size, FILTERS[flt], box=box, reducing_gap=gap)
    return {
        "image": name,
        "size": size,
        "filter": flt,
        "box": box,
        "gap": gap,
        "expected": encoded(np.asarray(out)),
    }


def pil_fixtures() -> dict:
    """Pillow's resize (filters, boxes, every reduce path), reduce with a box, and affine BICUBIC."""
    cases = [
        ("noise40", (17, 13), "bicubic"),
        ("gradient20x17", (33, 29), "bicubic"),
        ("gradient20x17", (7, 9), "lanczos"),
        ("noise40", (11, 12), "lanczos", (2.3, 1.7, 37.6, 35.2)),
        ("noise40", (20, 16), "bicubic", (3, 4, 23, 20)),
        ("noise40", (40, 40), "lanczos", (0.5, 0, 40, 40)),
        ("noise40", (40, 23), "bicubic"),
    ]
    cases += [
        ("noise97x61", size, "bicubic", None, 2.0)
        for size in ((9, 7), (20, 13), (13, 20), (12, 7), (9, 6), (16, 10), (60, 15), (90, 7), (17, 30))
    ]
    cases += [
        ("noise97x61", (7, 5), "lanczos", (3.6, 2.2, 90.1, 58.9), 3.0),
        ("noise97x61", (5, 4), "lanczos", (10.25, 3.5, 96.5, 60.75), 3.0),
    ]
    photo = procedural(2700, 1500)
    big = Image.fromarray(photo).resize((640, 356), reducing_gap=2.0)
    reduce_cases = [
        ((3, 2), (1, 2, 96, 60)),
        ((2, 2), (0, 0, 97, 61)),
        ((5, 3), (4, 1, 93, 58)),
        ((1, 4), (0, 3, 97, 61)),
    ]
    rng = np.random.default_rng(3)
    affine_cases = [
        (1, 0, 0, 0, 1, 0),
        (1.02, 0.13, -3.3, -0.21, 0.97, 2.6),
        (2.1, -0.4, 1.5, 0.4, 2.1, -7.25),
        (0.35, 0.1, 12.2, -0.1, 0.35, 9.9),
        (1.0, 0.0, 30.0, 0.0, 1.0, -15.5),
        tuple(rng.normal(0.8, 0.5, 6).round(6).tolist()),
    ]
    return {
        "resize": [resized(*case) for case in cases],
        "large": {
            "procedural": [2700, 1500],
            "size": [640, 356],
            "gap": 2.0,
            "sha256": hashlib.sha256(np.asarray(big).tobytes()).hexdigest(),
        },
        "reduce": [
            {
                "image": "noise97x61",
                "factor": factor,
                "box": box,
                "expected": encoded(np.asarray(Image.fromarray(IMAGES["noise97x61"]).reduce(factor, box))),
            }
            for factor, box in reduce_cases
        ],
        "affine": [
            {
                "image": "noise40",
                "size": 24,
                "coefficients": coefficients,
                "expected": encoded(
                    np.asarray(
                        Image.fromarray(IMAGES["noise40"]).transform(
                            (24, 24),
                            Image.AFFINE,
                            coefficients,
                            resample=Image.BICUBIC,
                            fillcolor=(128, 128, 128),
                        )
                    )
                ),
            }
            for coefficients in affine_cases
        ],
    }


def normalized(name: str) -> np.ndarray:
    """An image as the mtcnn package feeds it to its stages: a batch of one, (pixel - 127.5) / 128."""
    return (IMAGES[name][None] - 127.5) / 128


def tf_fixtures() -> dict:
    """The mtcnn package's scale pyramid, TF's AREA resize at its scales, and crop_and_resize of boxes."""
    from mtcnn.utils.images import build_scale_pyramid, extract_patches, scale_images

    image = normalized("noise40")
    boxes = [[[0, 3.2, 5.7, 20.9, 23.4], [0, -4.5, 30.25, 12.5, 47.25]], [[0, 9.1, -2.6, 41.3, 29.6]]]
    sizes = [
        (640, 480),
        (480, 640),
        (427, 640),
        (37, 29),
        (12, 12),
        (11, 30),
        (640, 356),
        (200, 100),
        (64, 48),
    ]
    return {
        "image": "noise40",
        "pyramid": [
            {"width": w, "height": h, "scales": build_scale_pyramid(w, h, 20, 0.709).tolist()}
            for w, h in sizes
        ],
        "area": [
            {"scale": scale, "expected": encoded(scale_images(image, scale).numpy()[0])}
            for scale in build_scale_pyramid(40, 40, 20, 0.709)
        ],
        "crop": [
            {
                "boxes": [box[1:] for box in group],
                "size": size,
                "expected": encoded(extract_patches(image, np.array(group), (size, size)).numpy()),
            }
            for group, size in zip(boxes, (24, 48), strict=True)
        ],
    }


def fake_pnet(images: tf.Tensor) -> list:
    """A stand-in for PNet (helpers.mjs fakeNets): probabilities and offsets read off the input pixels."""
    x = images.numpy()
    rows, columns = (-(-(side - 2) // 2) - 4 for side in x.shape[1:3])
    ys, xs = np.mgrid[0:rows, 0:columns]
    p = (x[0, 2 * ys + 5, 2 * xs + 5, 0] + np.float32(1)) / np.float32(2)
    offsets = np.stack([x[0, 2 * ys + 4 + k, 2 * xs + 4, 1] * np.float32(0.25) for k in range(4)], axis=-1)
    return [tf.constant(offsets[None]), tf.constant(np.stack([1 - p, p], axis=-1)[None])]


def fake_rnet(patches: tf.Tensor) -> list:
    """A stand-in for RNet (helpers.mjs fakeNets)."""
    x = patches.numpy()
    p = (x[:, 12, 12, 0] + np.float32(1)) / np.float32(2)
    offsets = np.stack([x[:, 6 + 3 * k, 9, 2] * np.float32(0.125) for k in range(4)], axis=-1)
    return [tf.constant(offsets), tf.constant(np.stack([1 - p, p], axis=-1))]


def fake_onet(patches: tf.Tensor) -> list:
    """A stand-in for ONet (helpers.mjs fakeNets)."""
    x = patches.numpy()
    p = (x[:, 24, 24, 1] + np.float32(1)) / np.float32(2)
    offsets = np.stack([x[:, 30 + k, 14, 2] * np.float32(0.0625) for k in range(4)], axis=-1)
    points = np.stack(
        [np.float32(0.3) + x[:, 10 + 2 * k, 20 + k, 0] * np.float32(0.05) for k in range(10)], axis=-1
    )
    return [tf.constant(offsets), tf.constant(points), tf.constant(np.stack([1 - p, p], axis=-1))]


def face_json(face) -> dict:
    """A detected face as detectFaces returns it."""
    return {
        "box": list(face.box),
        "leftEye": list(face.left_eye),
        "rightEye": list(face.right_eye),
        "confidence": face.confidence,
        "pixel": face.pixel,
    }


def mtcnn_fixtures() -> dict:
    """fbp.faces.detect_faces with the stand-in networks (the whole pipeline but the networks): on a small
    image, and on a larger one that is shrunk first; and the detection sizes of some photos."""
    detector = faces._face_detector()
    for stage, fake in zip(detector.stages, (fake_pnet, fake_rnet, fake_onet), strict=True):
        stage._model = fake
    small = Image.fromarray(IMAGES["bright64x48"])
    large = Image.fromarray(procedural(700, 500))
    shrink = [
        (w, h, round(w * min(1, 640 / max(w, h))), round(h * min(1, 640 / max(w, h))))
        for w, h in ((4032, 3024), (3024, 4032), (700, 500), (641, 1), (1000, 1000), (640, 480))
    ]
    return {
        "shrink": shrink,
        "small": {
            "image": "bright64x48",
            "raw": json.loads(json.dumps(detector.detect_faces(np.asarray(small)), default=float)),
            "faces": [face_json(face) for face in faces.detect_faces(small)],
        },
        "large": {"procedural": [700, 500], "faces": [face_json(face) for face in faces.detect_faces(large)]},
    }


def align_fixtures() -> dict:
    """align_face (with and without the shrinking) for each of EYE_SHIFTS as notebook 05 aligns a face, the
    mirror of its six crops, and the size check."""
    photo = Image.fromarray(procedural(400, 300))
    big = faces._Face(
        box=(80, 60, 200, 200), left_eye=(201.3, 103.7), right_eye=(90.2, 118.1), confidence=0.99, pixel=0.625
    )
    near = faces._Face(
        box=(5, 5, 20, 20), left_eye=(14.6, 17.2), right_eye=(21.9, 16.4), confidence=0.95, pixel=1.0
    )
    small = faces._Face(
        box=(5, 5, 20, 20), left_eye=(30.0, 20.0), right_eye=(36.5, 21.5), confidence=0.95, pixel=1.0
    )
    noise40 = Image.fromarray(IMAGES["noise40"])
    crops = []
    for name, image, face, size in (
        ("procedural", photo, big, 24),
        ("noise40", noise40, near, 24),
        ("noise40", noise40, small, 34),
    ):
        aligned = np.stack(
            [
                np.asarray(faces.align_face(image, faces.shifted_eyes(face, shift), FRAMING, size))
                for shift in faces.EYE_SHIFTS
            ]
        )
        crops.append(
            {
                "image": name,
                "face": face_json(face),
                "size": size,
                "aligned": encoded(aligned),
            }
        )
    checks = []
    for face, size in ((big, 224), (small, 224), (small, 64), (near, 350)):
        try:
            faces.check_face_size(face, FRAMING, size)
            message = None
        except PhotoError as problem:
            message = str(problem)
        checks.append(
            {
                "face": face_json(face),
                "size": size,
                "needed": faces.min_eye_distance(FRAMING, size),
                "message": message,
            }
        )
    return {
        "procedural": [400, 300],
        "framing": FRAMING,
        "shifts": faces.EYE_SHIFTS,
        "crops": crops,
        "checks": checks,
        "mirror": {"image": "gradient20x17", "expected": encoded(IMAGES["gradient20x17"][:, ::-1])},
    }


def reference(rng: np.random.Generator, n: int) -> SimpleNamespace:
    """A model's reference: its predictions for n held-out faces and their raters' scores."""
    predicted = rng.normal(3.0, 0.45, n).round(4)  # 4 decimals: some predictions tie
    return SimpleNamespace(
        predicted=predicted, true=(1.3 * predicted - 0.9 + rng.normal(0, 0.35, n)).round(4), map_scale=None
    )


def place_fixtures() -> dict:
    """percentile_of, calibrated_percentile, score_face (one model and five, with and without shares),
    describe_shares and shares_against_score."""
    rng = np.random.default_rng(4)
    references = [reference(rng, n) for n in (1100, 1099, 50, 15)]
    scores = [1.0, 2.2, 2.95, 3.0, 3.41, 4.6, 5.0, float(references[0].predicted[7])]
    calibrated = [
        {"reference": i, "score": s, "expected": list(scoring.calibrated_percentile(s, references[i]))}
        for i in range(len(references))
        for s in scores
    ]
    results = []
    for models, shares in ((1, True), (5, True), (5, False), (1, False)):
        outputs = [{"score": rng.normal(3.1, 0.15, (6, 1)).astype(np.float32)} for _ in range(models)]
        for output in outputs if shares else []:
            output["distribution"] = rng.dirichlet(np.ones(5) * 2, 6).astype(np.float32)
        scorers = [SimpleNamespace(reference=references[i % len(references)]) for i in range(models)]
        result = scoring.score_face(None, None, outputs, scorers)
        results.append(
            {
                "outputs": [
                    {
                        "score": output["score"][:, 0].tolist(),
                        "distribution": output["distribution"].ravel().tolist() if shares else None,
                    }
                    for output in outputs
                ],
                "references": [i % len(references) for i in range(models)],
                "expected": {
                    "score": result.score,
                    "span": list(result.span),
                    "disagreement": result.disagreement,
                    "percentile": result.percentile,
                    "low": result.low,
                    "high": result.high,
                    "shares": None if result.shares is None else result.shares.tolist(),
                    "against": scoring.shares_against_score(result) if shares else None,
                },
            }
        )
    shares = [
        np.array(s, np.float32)
        for s in (
            [0.05, 0.2, 0.5, 0.2, 0.05],
            [0.2] * 5,
            [0, 0, 1, 0, 0],
            [0.1, 0.1, 0.1, 0.35, 0.35],
            [0.0125, 0.0375, 0.6, 0.3, 0.05],
        )
    ]
    shares += list(rng.dirichlet(np.ones(5), 6).astype(np.float32))
    spans = [(3.0, 3.1), (3.005, 3.1), (2.9, 3.004999), (1.0, 1.1), (3.12, 3.2)]
    return {
        "references": [{"predicted": r.predicted.tolist(), "true": r.true.tolist()} for r in references],
        "percentile_of": [
            {"reference": 3, "score": s, "expected": dataset.percentile_of(s, references[3].true)}
            for s in (*references[3].true[:5], 0.0, 9.0, 3.0)
        ],
        "calibrated": calibrated,
        "score_face": results,
        "describe": [{"shares": s.tolist(), "expected": scoring.describe_shares(s)} for s in shares],
        "against": [
            {
                "shares": s.tolist(),
                "span": span,
                "expected": scoring.shares_against_score(SimpleNamespace(shares=s, span=span)),
            }
            for s in shares[:5]
            for span in spans
        ],
    }


def main() -> None:
    """Writes every fixture file."""
    FIXTURES.mkdir(exist_ok=True)
    parts = {
        "images": {name: image_json(pixels) for name, pixels in IMAGES.items()},
        "pil": pil_fixtures(),
        "tf": tf_fixtures(),
        "align": align_fixtures(),
        "place": place_fixtures(),
        "mtcnn": mtcnn_fixtures(),
    }
    for name, content in parts.items():
        (FIXTURES / f"{name}.json").write_text(json.dumps(content, separators=(",", ":")) + "\n")
        print(f"{name}.json: {(FIXTURES / f'{name}.json').stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
