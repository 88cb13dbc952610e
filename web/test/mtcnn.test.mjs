import assert from "node:assert/strict";
import test from "node:test";

import { detectFaces, mtcnn, shrunkForDetection } from "../src/mtcnn.js";
import { fixture, image, procedural } from "./fixtures.mjs";

const MTCNN = fixture("mtcnn");
const f = Math.fround;

/** A stand-in for onnxruntime: its Tensor is the {data, dims} a session reads. */
const ort = { Tensor: class { constructor(type, data, dims) { Object.assign(this, { type, data, dims }); } } };

/** A network's stand-in: a session whose outputs `compute` reads off the input (as make_fixtures.py's). */
function session(compute) {
  return { inputNames: ["input"], run: async ({ input }) => compute(input.data, input.dims) };
}

/** Outputs as a session gives them: name -> {data, dims}. */
function outputs(...tensors) {
  return Object.fromEntries(tensors.map(([data, dims], i) => [`output_${i}`, { data: Float32Array.from(data), dims }]));
}

/** make_fixtures.py's fake_pnet, fake_rnet and fake_onet: probabilities, offsets and points read off pixels. */
const fakeNets = {
  pnet: session((x, [, height, width]) => {
    const [rows, columns] = [height, width].map((side) => Math.ceil((side - 2) / 2) - 4);
    const at = (y, xx, c) => x[(y * width + xx) * 3 + c];
    const [offsets, classes] = [[], []];
    for (let y = 0; y < rows; y++) {
      for (let xx = 0; xx < columns; xx++) {
        const p = f(f(at(2 * y + 5, 2 * xx + 5, 0) + 1) / 2);
        classes.push(f(1 - p), p);
        for (let k = 0; k < 4; k++) offsets.push(f(at(2 * y + 4 + k, 2 * xx + 4, 1) * 0.25));
      }
    }
    return outputs([offsets, [1, rows, columns, 4]], [classes, [1, rows, columns, 2]]);
  }),
  rnet: session((x, [n]) => {
    const at = (i, y, xx, c) => x[((i * 24 + y) * 24 + xx) * 3 + c];
    const [offsets, classes] = [[], []];
    for (let i = 0; i < n; i++) {
      const p = f(f(at(i, 12, 12, 0) + 1) / 2);
      classes.push(f(1 - p), p);
      for (let k = 0; k < 4; k++) offsets.push(f(at(i, 6 + 3 * k, 9, 2) * 0.125));
    }
    return outputs([offsets, [n, 4]], [classes, [n, 2]]);
  }),
  onet: session((x, [n]) => {
    const at = (i, y, xx, c) => x[((i * 48 + y) * 48 + xx) * 3 + c];
    const [offsets, points, classes] = [[], [], []];
    for (let i = 0; i < n; i++) {
      const p = f(f(at(i, 24, 24, 1) + 1) / 2);
      classes.push(f(1 - p), p);
      for (let k = 0; k < 4; k++) offsets.push(f(at(i, 30 + k, 14, 2) * 0.0625));
      for (let k = 0; k < 10; k++) points.push(f(f(0.3) + f(at(i, 10 + 2 * k, 20 + k, 0) * f(0.05))));
    }
    return outputs([classes, [n, 2]], [points, [n, 10]], [offsets, [n, 4]]);
  }),
};

test("shrunkForDetection sizes a photo as fbp.faces.detect_faces does (640 px longest side, never enlarged)", () => {
  for (const [width, height, w, h] of MTCNN.shrink) {
    const { small } = shrunkForDetection({ width, height, data: new Uint8ClampedArray(width * height * 3) }, 640);
    assert.deepEqual([small.width, small.height], [w, h]);
  }
});

test("mtcnn gives the mtcnn package's faces (boxes, eyes, confidence) with the same networks", async () => {
  const found = await mtcnn(image(MTCNN.small.image), fakeNets, ort);
  assert.deepEqual(found, MTCNN.small.raw.map((face) => ({ box: face.box, leftEye: face.keypoints.left_eye,
    rightEye: face.keypoints.right_eye, confidence: face.confidence })));
});

test("detectFaces gives fbp.faces.detect_faces's faces, on a small photo and on a shrunk one", async () => {
  assert.deepEqual(await detectFaces(image(MTCNN.small.image), fakeNets, ort), MTCNN.small.faces);
  const [width, height] = MTCNN.large.procedural;
  assert.deepEqual(await detectFaces(procedural(width, height), fakeNets, ort), MTCNN.large.faces);
});
