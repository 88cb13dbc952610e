import assert from "node:assert/strict";
import test from "node:test";

import { scalePyramid } from "../src/mtcnn.js";
import { cropAndResize, resizeArea } from "../src/tf.js";
import { fixture, floats, image } from "./fixtures.mjs";

const TF = fixture("tf");

/** A stored image as the mtcnn package normalises it: (pixel - 127.5) / 128. */
function normalized(name) {
  const { width, height, data } = image(name);
  return { width, height, data: Float64Array.from(data, (v) => (v - 127.5) / 128) };
}

test("scalePyramid gives the mtcnn package's scales (to 1 ulp: NumPy's SIMD power, V8's Math.pow and glibc's pow differ there)", () => {
  for (const { width, height, scales } of TF.pyramid) {
    const ours = scalePyramid(width, height);
    assert.equal(ours.length, scales.length, `${width} x ${height}`);
    ours.forEach((scale, i) => assert.ok(Math.abs(scale - scales[i]) <= scales[i] * Number.EPSILON, `${width} x ${height}: ${scale} ${scales[i]}`));
  }
});

test("resizeArea gives tf.image.resize(AREA)'s float32 values at each scale of the pyramid", () => {
  const input = normalized(TF.image);
  for (const { scale, expected } of TF.area) {
    const out = resizeArea(input, Math.trunc(input.width * scale), Math.trunc(input.height * scale));
    assert.deepEqual(out.data, floats(expected), `scale ${scale}`);
  }
});

test("cropAndResize gives tf.image.crop_and_resize's float32 values, 0 outside the image", () => {
  const input = normalized(TF.image);
  for (const { boxes, size, expected } of TF.crop) {
    const fractions = boxes.map(([x1, y1, x2, y2]) => [y1 / input.height, x1 / input.width, y2 / input.height, x2 / input.width]);
    assert.deepEqual(cropAndResize(input, fractions, size), floats(expected), `${boxes}`);
  }
});
