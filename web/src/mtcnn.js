// fbp.faces.detect_faces in the browser: the photo shrunk as Python shrinks it, then the mtcnn
// package's (1.0) three stages with its ONNX networks, step by step as mtcnn/stages and mtcnn/utils
// compute them (NumPy float64, and float32 where the package computes with TensorFlow tensors).

import { BICUBIC, resize } from "./pil.js";
import { roundHalfEven } from "./numeric.js";
import { cropAndResize, resizeArea } from "./tf.js";

const f = Math.fround;

// mtcnn 1.0's defaults (MTCNN.detect_faces and its stages).
const MIN_FACE_SIZE = 20;
const MIN_SIZE = 12;
const SCALE_FACTOR = 0.709;
const THRESHOLDS = { pnet: 0.6, rnet: 0.7, onet: 0.8 };
const NMS = { pnetScale: 0.5, pnetAll: 0.7, rnet: 0.7, onet: 0.7 };

/** The image as the networks take it: (pixel - 127.5) / 128 (normalize_images). */
function normalized(image) {
  return { width: image.width, height: image.height, data: Float64Array.from(image.data, (v) => (v - 127.5) / 128) };
}

/** build_scale_pyramid: the scales at which PNet looks for faces of MIN_FACE_SIZE pixels and more. */
export function scalePyramid(width, height) {
  const count = roundHalfEven(-(Math.log(Math.min(width, height) / MIN_SIZE) / Math.log(SCALE_FACTOR) + 1));
  return Array.from({ length: Math.max(0, count) }, (_, i) => (MIN_SIZE / MIN_FACE_SIZE) * SCALE_FACTOR ** i);
}

/** A network's outputs by their last dimension (4: box offsets, 10: landmarks, 2: face probability). */
async function run(session, ort, data, dims) {
  const outputs = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", data, dims) });
  return Object.fromEntries(Object.values(outputs).map((output) => [output.dims.at(-1), output]));
}

/** generate_bounding_box then upscale_bboxes: PNet's cells above the threshold as boxes in the image's
 * pixels (12-pixel cells every 2 pixels, moved by the offsets), highest probability first. */
function proposals(offsets, probabilities, scale) {
  const [, rows, columns] = probabilities.dims;
  const boxes = [];
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      const cell = y * columns + x;
      const score = probabilities.data[cell * 2 + 1];
      if (score <= f(THRESHOLDS.pnet)) continue;
      const [dx1, dy1, dx2, dy2] = offsets.data.subarray(cell * 4, cell * 4 + 4);
      boxes.push({ x1: (2 * x + 1 + dx1 * 11) / scale, y1: (2 * y + 1 + dy1 * 11) / scale,
        x2: (2 * x + 12 + dx2 * 11) / scale, y2: (2 * y + 12 + dy2 * 11) / scale, score });
    }
  }
  return sortedByScore(boxes);
}

/** sort_by_scores(descending): argsort of the scores, reversed (ties in reverse order; NumPy's
 * argsort is not stable beyond 16 items, so tied scores may come out in another order there). */
function sortedByScore(boxes) {
  return boxes.map((box, i) => [box, i]).sort(([a, i], [b, j]) => a.score - b.score || i - j).map(([box]) => box).reverse();
}

/** iou(): the overlap of two boxes, over their union or over the smaller one. */
function overlapOf(a, b, method) {
  const area = (box) => (box.x2 - box.x1) * (box.y2 - box.y1);
  const inter = Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1)) * Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
  return inter / (method === "union" ? area(a) + area(b) - inter : Math.min(area(a), area(b)));
}

/** smart_nms_from_bboxes: a box is kept unless it overlaps any box before it (kept or not) more than
 * the threshold; sorted by score first if asked. */
function suppressed(boxes, threshold, method, sort) {
  const ordered = sort ? sortedByScore(boxes) : boxes;
  return ordered.filter((box, j) => ordered.slice(0, j).every((earlier) => !(overlapOf(earlier, box, method) > threshold)));
}

/** resize_to_square: each box grown to a square on its longer side, about its centre. */
function squared(boxes) {
  return boxes.map((box) => {
    const [w, h] = [box.x2 - box.x1, box.y2 - box.y1];
    const side = Math.max(w, h);
    const [x1, y1] = [box.x1 + w * 0.5 - side * 0.5, box.y1 + h * 0.5 - side * 0.5];
    return { ...box, x1, y1, x2: x1 + side, y2: y1 + side };
  });
}

/** adjust_bboxes with TensorFlow's offsets: each side moved by its offset times the box's size (+1),
 * in float32 as the package's tensor arithmetic does. */
function adjusted(box, [dx1, dy1, dx2, dy2]) {
  const [w, h] = [f(box.x2 - box.x1 + 1), f(box.y2 - box.y1 + 1)];
  const moved = (value, offset, size) => f(f(value) + f(offset * size));
  return { ...box, x1: moved(box.x1, dx1, w), y1: moved(box.y1, dy1, h), x2: moved(box.x2, dx2, w), y2: moved(box.y2, dy2, h) };
}

/** extract_patches: each box's pixels resized to size x size (bilinear), as one float32 batch. */
function patches(image, boxes, size) {
  const fractions = boxes.map((box) => [box.y1 / image.height, box.x1 / image.width, box.y2 / image.height, box.x2 / image.width]);
  return cropAndResize(image, fractions, size);
}

/** StagePNet: PNet over the scale pyramid, NMS per scale then over all, squared. */
async function pnetStage(image, session, ort) {
  const perScale = [];
  for (const scale of scalePyramid(image.width, image.height)) {
    const scaled = resizeArea(image, Math.trunc(image.width * scale), Math.trunc(image.height * scale));
    const out = await run(session, ort, scaled.data, [1, scaled.height, scaled.width, 3]);
    perScale.push(...suppressed(proposals(out[4], out[2], scale), NMS.pnetScale, "union", false));
  }
  return squared(suppressed(perScale, NMS.pnetAll, "union", true));
}

/** StageRNet: RNet's probability and offsets for each 24 x 24 patch; kept above the threshold, NMS,
 * squared. */
async function rnetStage(image, boxes, session, ort) {
  const out = await run(session, ort, patches(image, boxes, 24), [boxes.length, 24, 24, 3]);
  const refined = boxes.map((box, i) => adjusted({ ...box, score: out[2].data[i * 2 + 1] }, out[4].data.subarray(i * 4, i * 4 + 4)));
  return squared(suppressed(refined.filter((box) => box.score > THRESHOLDS.rnet), NMS.rnet, "union", true));
}

/** adjust_landmarks: ONet's five points (x1..x5, y1..y5, fractions of the box) in the image's pixels,
 * stored as float32 as the package stores them. */
function landmarks(box, points) {
  const [w, h] = [box.x2 - box.x1 + 1, box.y2 - box.y1 + 1];
  return Array.from(points, (p, k) => f(k < 5 ? w * p + box.x1 - 1 : h * p + box.y1 - 1));
}

/** StageONet: ONet's probability, offsets and landmarks for each 48 x 48 patch; kept above the
 * threshold, NMS over the smaller box. */
async function onetStage(image, boxes, session, ort) {
  const out = await run(session, ort, patches(image, boxes, 48), [boxes.length, 48, 48, 3]);
  const refined = boxes.map((box, i) => ({
    ...adjusted({ ...box, score: out[2].data[i * 2 + 1] }, out[4].data.subarray(i * 4, i * 4 + 4)),
    points: landmarks(box, out[10].data.subarray(i * 10, i * 10 + 10)),
  }));
  return suppressed(refined.filter((box) => box.score > THRESHOLDS.onet), NMS.onet, "min", true);
}

/** limit_bboxes then to_json: the box inside the image, as whole pixels [x, y, w, h]; the eyes rounded. */
function asFace(box, width, height) {
  const [x1, x2] = [box.x1, box.x2].map((x) => Math.min(Math.max(x, 0), width - 1));
  const [y1, y2] = [box.y1, box.y2].map((y) => Math.min(Math.max(y, 0), height - 1));
  const point = (k) => [roundHalfEven(box.points[k]), roundHalfEven(box.points[k + 5])];
  return { box: [x1, y1, x2 - x1, y2 - y1].map(roundHalfEven), leftEye: point(0), rightEye: point(1), confidence: box.score };
}

/** The mtcnn package's MTCNN().detect_faces(pixels) for one RGB image, with ONNX sessions for its three
 * networks: each face's box and eyes in whole pixels, and its confidence. */
export async function mtcnn(image, nets, ort) {
  const input = normalized(image);
  let boxes = await pnetStage(input, nets.pnet, ort);
  if (boxes.length) boxes = await rnetStage(input, boxes, nets.rnet, ort);
  if (boxes.length) boxes = await onetStage(input, boxes, nets.onet, ort);
  return boxes.map((box) => asFace(box, image.width, image.height));
}

/** How fbp.faces.detect_faces shrinks a photo for detection: to maxSide on its longest side (PIL's
 * default BICUBIC, reducing_gap 2.0), never enlarged; the image and the scale. */
export function shrunkForDetection(image, maxSide) {
  const scale = Math.min(1, maxSide / Math.max(image.width, image.height));
  if (scale === 1) return { small: image, scale };
  return { small: resize(image, roundHalfEven(image.width * scale), roundHalfEven(image.height * scale), BICUBIC, null, 2.0), scale };
}

/** fbp.faces.detect_faces: the faces of an RGB photo with confidence >= minConfidence, largest box first,
 * in the photo's pixels: {box: [x, y, w, h], leftEye, rightEye, confidence, pixel} (pixel: one pixel
 * of the image the detector saw, in the photo's pixels). */
export async function detectFaces(image, nets, ort, { maxSide = 640, minConfidence = 0.9 } = {}) {
  const { small, scale } = shrunkForDetection(image, maxSide);
  const back = (values) => values.map((v) => v / scale);
  return (await mtcnn(small, nets, ort))
    .filter((face) => face.confidence >= minConfidence)
    .map((face) => ({ box: back(face.box), leftEye: back(face.leftEye), rightEye: back(face.rightEye),
      confidence: face.confidence, pixel: 1 / scale }))
    .sort((a, b) => b.box[2] * b.box[3] - a.box[2] * a.box[3]);
}
