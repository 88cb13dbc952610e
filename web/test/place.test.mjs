import assert from "node:assert/strict";
import test from "node:test";

import { calibratedPercentile, describeShares, percentileOf, scoreFace, sharesAgainstScore } from "../src/place.js";
import { fixture } from "./fixtures.mjs";

const PLACE = fixture("place");

test("percentileOf gives fbp.dataset.percentile_of (the share strictly below)", () => {
  for (const { reference, score, expected } of PLACE.percentile_of) {
    assert.equal(percentileOf(score, PLACE.references[reference].true), expected);
  }
});

test("calibratedPercentile gives fbp.scoring.calibrated_percentile: place, and range among the nearest", () => {
  for (const { reference, score, expected } of PLACE.calibrated) {
    assert.deepEqual(calibratedPercentile(score, PLACE.references[reference]), expected, `reference ${reference}, score ${score}`);
  }
});

test("scoreFace gives fbp.scoring.score_face's numbers, with one model and five, with shares and without", () => {
  for (const { outputs, references, expected } of PLACE.score_face) {
    const models = references.map((i) => ({ reference: PLACE.references[i] }));
    const result = scoreFace(outputs, models);
    const label = `${outputs.length} model(s)`;
    assert.equal(result.score, expected.score, label);
    assert.deepEqual(result.span, expected.span, label);
    assert.equal(result.disagreement, expected.disagreement, label);
    assert.deepEqual([result.percentile, result.low, result.high], [expected.percentile, expected.low, expected.high], label);
    assert.deepEqual(result.shares, expected.shares, label);
    if (expected.against !== null) assert.equal(sharesAgainstScore(result), expected.against, label);
  }
});

test("describeShares says the shares in fbp.scoring.describe_shares's words", () => {
  for (const { shares, expected } of PLACE.describe) assert.equal(describeShares(shares), expected);
});

test("sharesAgainstScore says when the shares' mean lies outside the crops' span, as Python does", () => {
  for (const { shares, span, expected } of PLACE.against) assert.equal(sharesAgainstScore({ shares, span }), expected, `${shares} ${span}`);
});
