// fbp.faces' alignment: a face rotated, scaled and cropped so that its eyes sit where the dataset has
// them (align_face, _shrunk_around), its nearby alignments (shifted_eyes, EYE_SHIFTS) and mirrors
// (notebook 05's six crops), and the refusal of a face too small to score (check_face_size).

import { mirrored } from "./image.js";
import { fixed, roundHalfEven } from "./numeric.js";
import { LANCZOS, affine, resize } from "./pil.js";

const GREY = [128, 128, 128];  // the crop outside the photo

/** The face's eyes as [left, right] in image order, whatever the detector called them (_eyes_of). */
export function eyesOf(face) {
  return face.rightEye[0] < face.leftEye[0] ? [face.rightEye, face.leftEye] : [face.leftEye, face.rightEye];
}

/** The distance between two points, as np.linalg.norm(b - a). */
function distance(a, b) {
  const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
  return Math.sqrt(dx * dx + dy * dy);
}

/** _shrunk_around: the part of the photo the crop covers (with a few crop pixels of margin), shrunk
 * to the crop's scale with Lanczos, and the crop's mapping (matrix rows, offset) into that part. */
function shrunkAround(image, matrix, offset, size, scale) {
  const corners = [[0, 0], [size, 0], [0, size], [size, size]]
    .map(([x, y]) => matrix.map((row, i) => row[0] * x + row[1] * y + offset[i]));
  const margin = 4 / scale;
  const limits = [image.width, image.height];
  const low = [0, 1].map((i) => Math.min(Math.max(Math.floor(Math.min(...corners.map((c) => c[i])) - margin), 0), limits[i]));
  const high = [0, 1].map((i) => Math.min(Math.max(Math.ceil(Math.max(...corners.map((c) => c[i])) + margin), low[i] + 1), limits[i]));
  const sizes = [0, 1].map((i) => Math.max(1, roundHalfEven((high[i] - low[i]) * scale)));
  const shrunk = resize(image, sizes[0], sizes[1], LANCZOS, [low[0], low[1], high[0], high[1]], 3.0);
  const ratio = [0, 1].map((i) => sizes[i] / (high[i] - low[i]));
  return { image: shrunk, matrix: matrix.map((row, i) => row.map((v) => v * ratio[i])), offset: offset.map((v, i) => (v - low[i]) * ratio[i]) };
}

/** fbp.faces.align_face: the size x size crop with the eyes level, framing.eye_distance * size apart,
 * their midpoint at (eye_center_x, eye_center_y) * size; a face larger than the crop is shrunk first. */
export function alignFace(image, face, framing, size) {
  const [left, right] = eyesOf(face);
  const angle = Math.atan2(right[1] - left[1], right[0] - left[0]);
  const scale = framing.eye_distance * size / distance(left, right);  // crop pixels per photo pixel
  const center = [(left[0] + right[0]) / 2, (left[1] + right[1]) / 2];
  const target = [framing.eye_center_x * size, framing.eye_center_y * size];
  const [cos, sin] = [Math.cos(angle), Math.sin(angle)];
  let matrix = [[cos / scale, -sin / scale], [sin / scale, cos / scale]];
  let offset = matrix.map((row, i) => center[i] - (row[0] * target[0] + row[1] * target[1]));
  if (scale < 1) ({ image, matrix, offset } = shrunkAround(image, matrix, offset, size, scale));
  return affine(image, size, [matrix[0][0], matrix[0][1], offset[0], matrix[1][0], matrix[1][1], offset[1]], GREY);
}

/** fbp.faces.shifted_eyes: the face with its eye points (in image order) moved by a shift
 * [left x, left y, right x, right y] in the detector's pixels. */
export function shiftedEyes(face, shift) {
  const [left, right] = eyesOf(face);
  const moved = shift.map((v) => v * face.pixel);
  return { ...face, leftEye: [left[0] + moved[0], left[1] + moved[1]], rightEye: [right[0] + moved[2], right[1] + moved[3]] };
}

/** Notebook 05's six crops of a face: its alignments with the eyes shifted by each of `shifts`, then
 * their mirrors. */
export function sixCrops(image, face, framing, size, shifts) {
  const aligned = shifts.map((shift) => alignFace(image, shiftedEyes(face, shift), framing, size));
  return [...aligned, ...aligned.map(mirrored)];
}

/** fbp.faces.min_eye_distance: the pixels a face needs between its eyes in the photo, the dataset's at
 * the model's input size divided by the largest enlargement allowed, rounded up. */
export function minEyeDistance(framing, size, maxEnlargement) {
  return Math.ceil(framing.eye_distance * size / maxEnlargement);
}

/** fbp.faces.check_face_size's refusal of a face too small to score, in its words; null if big enough. */
export function faceTooSmall(face, framing, size, maxEnlargement) {
  const needed = minEyeDistance(framing, size, maxEnlargement);
  const apart = distance(...eyesOf(face));
  if (apart >= needed) return null;
  return `too small to score: its eyes are ${Math.trunc(apart)} pixels apart in the photo, and the model needs ` +
    `at least ${needed} (it would enlarge the face ${fixed(framing.eye_distance * size / apart, 0)} times, into a ` +
    "blur unlike the dataset's faces). Use a photo taken closer, or the original rather than a shrunk copy.";
}
