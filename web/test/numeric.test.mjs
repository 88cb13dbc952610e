import assert from "node:assert/strict";
import test from "node:test";

import { fixed, mean, pyRound, roundHalfEven, sampleSD, sum } from "../src/numeric.js";

test("roundHalfEven rounds halves to the even integer, as np.round and Python's round", () => {
  assert.deepEqual([0.5, 1.5, 2.5, -1.5, 2.4999, -2.6, 3.5].map(roundHalfEven), [0, 2, 2, -2, 2, -3, 4]);
});

test("fixed formats as Python's f-strings, exact binary ties to the even digit", () => {
  const python = [[0.125, 2, "0.12"], [2.5, 0, "2"], [3.5, 0, "4"], [-0.375, 2, "-0.38"], [3.05, 2, "3.05"],
    [1.005, 2, "1.00"], [0.5, 0, "0"], [-2.5, 0, "-2"], [7.4999, 0, "7"], [1e-7, 2, "0.00"], [12.345, 2, "12.35"],
    [1.5, 0, "2"], [Infinity, 0, "inf"], [NaN, 2, "nan"]];
  for (const [x, digits, text] of python) assert.equal(fixed(x, digits), text, `${x}`);
  assert.equal(pyRound(0.125, 2), 0.12);
  assert.equal(pyRound(12.345, 2), 12.35);
});

test("sum adds as NumPy's pairwise summation", () => {
  assert.equal(sum([1e16, ...Array(15).fill(1)]), 1.0000000000000014e16);  // np.sum; in order: 1e16
  assert.equal(sum([0.1, 0.2, 0.3]), 0.1 + 0.2 + 0.3);
  assert.equal(mean([1, 2, 3, 4]), 2.5);
  assert.equal(sampleSD([2, 4, 4, 4, 5, 5, 7, 9]), Math.sqrt(32 / 7));
});
