import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import test from "node:test";

import { affine, reduce, resize } from "../src/pil.js";
import { bytes, fixture, image, procedural } from "./fixtures.mjs";

const PIL = fixture("pil");

/** Where two byte arrays first differ, for a failure's message. */
function firstDifference(actual, expected) {
  const i = actual.findIndex((v, k) => v !== expected[k]);
  return i < 0 ? "none" : `byte ${i}: ${actual[i]} instead of ${expected[i]}`;
}

test("resize gives Pillow's bytes: BICUBIC and LANCZOS, boxes, crops, every reducing-gap path", () => {
  for (const { image: name, size, filter, box, gap, expected } of PIL.resize) {
    const out = resize(image(name), size[0], size[1], filter, box, gap);
    const label = `${name} to ${size} ${filter} box ${box} gap ${gap}`;
    assert.deepEqual([out.width, out.height], size, label);
    assert.ok(Buffer.from(out.data).equals(Buffer.from(bytes(expected))), `${label}: ${firstDifference(out.data, bytes(expected))}`);
  }
});

test("resize shrinks a 2700 x 1500 photo for detection as Pillow does (reduce 2 x 2, then BICUBIC)", () => {
  const { procedural: [width, height], size, gap, sha256 } = PIL.large;
  const out = resize(procedural(width, height), size[0], size[1], "bicubic", null, gap);
  assert.equal(createHash("sha256").update(out.data).digest("hex"), sha256);
});

test("reduce averages whole and cut-short cells of a box as Pillow's Image.reduce", () => {
  for (const { image: name, factor, box, expected } of PIL.reduce) {
    const out = reduce(image(name), factor[0], factor[1], box);
    assert.ok(Buffer.from(out.data).equals(Buffer.from(bytes(expected))), `${factor} ${box}: ${firstDifference(out.data, bytes(expected))}`);
  }
});

test("affine gives Pillow's transform(AFFINE, BICUBIC, fillcolor) bytes", () => {
  for (const { image: name, size, coefficients, expected } of PIL.affine) {
    const out = affine(image(name), size, coefficients, [128, 128, 128]);
    assert.ok(Buffer.from(out.data).equals(Buffer.from(bytes(expected))), `${coefficients}: ${firstDifference(out.data, bytes(expected))}`);
  }
});
