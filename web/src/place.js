// fbp.scoring's result for one face (score_face without the map): the score, the crops' span, the
// models' disagreement, the percentile and its range among each model's reference, and the raters'
// shares in words, with Python's numbers and words.

import { fixed, mean, meanOfRows, pyRound, sampleSD, sum } from "./numeric.js";

const RATINGS = [1, 2, 3, 4, 5];
const RATERS = 60;

/** A value kept inside [low, high] (np.clip). */
function clip(value, low, high) {
  return Math.min(Math.max(value, low), high);
}

/** fbp.dataset.percentile_of: the share (in %) of the scores strictly below a score. */
export function percentileOf(score, scores) {
  return scores.filter((s) => s < score).length * (100 / scores.length);
}

/** fbp.scoring._neighbour_count: how many reference faces with the nearest predictions give a
 * percentile's range its spread. */
function neighbourCount(n) {
  return Math.min(n, Math.max(20, Math.floor(n / 10)));
}

/** scipy.stats.linregress(x, y)'s slope and intercept (least squares). */
function linregress(x, y) {
  const [xMean, yMean] = [mean(x), mean(y)];
  const dx = x.map((v) => v - xMean);
  const ssxm = sum(dx.map((v) => v * v)) * (1 / x.length);
  const ssxym = sum(dx.map((v, i) => v * (y[i] - yMean))) * (1 / x.length);
  const slope = ssxym / ssxm;
  return { slope, intercept: yMean - slope * xMean };
}

/** np.percentile(values, q) for each q, NumPy's default linear method. */
function percentiles(values, qs) {
  const sorted = Float64Array.from(values).sort();
  return qs.map((q) => {
    const at = (sorted.length - 1) * (q / 100);
    if (at >= sorted.length - 1) return sorted[sorted.length - 1];
    const below = Math.floor(at);
    const [a, b, t] = [sorted[below], sorted[below + 1], at - below];
    return t >= 0.5 ? b - (b - a) * (1 - t) : a + (b - a) * t;
  });
}

/** The index of the first value >= x in ascending values (np.searchsorted, side="left"). */
function searchSorted(values, x) {
  let [low, high] = [0, values.length];
  while (low < high) {
    const middle = (low + high) >> 1;
    if (values[middle] < x) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** fbp.scoring.calibrated_percentile: [the score's percentile among the reference's predictions, and
 * the range that holds the raters' place 8 times in 10] for reference {predicted, true}. */
export function calibratedPercentile(score, reference) {
  const order = reference.predicted.map((_, i) => i).sort((i, j) => reference.predicted[i] - reference.predicted[j] || i - j);
  const [predicted, truth] = [order.map((i) => reference.predicted[i]), order.map((i) => reference.true[i])];
  const line = linregress(predicted, truth);
  const misses = truth.map((t, i) => t - (line.intercept + line.slope * predicted[i]));
  const count = neighbourCount(order.length);
  const start = clip(searchSorted(predicted, score) - Math.floor(count / 2), 0, order.length - count);
  const foretold = percentiles(misses.slice(start, start + count), [10, 90]).map((miss) => line.intercept + line.slope * score + miss);
  return [percentileOf(score, reference.predicted), ...foretold.map((value) => percentileOf(value, reference.true))];
}

/** The raters' shares of 1-5, the mean over the crops and models of each model's [n, 5] output (flat),
 * in float32 as NumPy averages float32 outputs. */
function sharesMean(distributions, n) {
  const total = new Float32Array(5);
  for (const distribution of distributions) {
    for (let i = 0; i < n * 5; i++) total[i % 5] = Math.fround(total[i % 5] + distribution[i]);
  }
  return Array.from(total, (t) => Math.fround(t / (distributions.length * n)));
}

/** fbp.scoring.score_face without the map. outputs: per model (in the order of models), {score: its
 * [n, 1] output's values, distribution: its [n, 5] output's values (flat) or null}; models: the
 * manifest's, each with its reference {predicted, true}. The result: score (the mean of all, kept on
 * 1-5), span (the crops' lowest and highest scores, each averaged over the models), disagreement (SD of
 * the models' means; null for one model), percentile, low, high (each the mean of the models' own
 * places), shares (float32 shares of 1-5, or null). */
export function scoreFace(outputs, models) {
  const scores = outputs.map((output) => Array.from(output.score));
  const places = scores.map((row, i) => calibratedPercentile(clip(mean(row), 1, 5), models[i].reference));
  const [percentile, low, high] = meanOfRows(places);
  const crops = meanOfRows(scores);
  return {
    score: clip(mean(scores.flat()), 1, 5),
    span: [Math.min(...crops), Math.max(...crops)],
    disagreement: scores.length > 1 ? sampleSD(scores.map(mean)) : null,
    percentile, low, high,
    shares: outputs[0].distribution ? sharesMean(outputs.map((output) => output.distribution), scores[0].length) : null,
  };
}

/** fbp.scoring._percentages_in_steps: float32 shares as percentages in 5 % steps adding up to 100, each
 * rounded down to a step, the steps left over to the largest remainders (the lower rating on a tie). */
function percentagesInSteps(shares) {
  const total = Array.from(shares).reduce((t, share) => Math.fround(t + share), 0);
  const units = Array.from(shares, (share) => (share / total) * 20);
  const steps = units.map(Math.floor);
  const byRemainder = units.map((_, i) => i).sort((i, j) => (steps[i] - units[i]) - (steps[j] - units[j]) || i - j);
  byRemainder.slice(0, 20 - steps.reduce((a, b) => a + b, 0)).forEach((i) => { steps[i] += 1; });
  return steps.map((s) => 5 * s);
}

/** fbp.scoring._shares_mean: the mean rating of the shares as printed (in 5 % steps). */
function sharesMeanRating(shares) {
  return percentagesInSteps(shares).reduce((total, percent, i) => total + percent * RATINGS[i], 0) / 100;
}

/** fbp.scoring.describe_shares: the raters' shares of 1-5 in words, largest first, e.g. "of 60 raters like
 * the dataset's, about 55 % would give a 3, 25 % a 4 and 20 % a 2 (their mean 3.05)". */
export function describeShares(shares) {
  const percents = percentagesInSteps(shares);
  const named = RATINGS.map((rating, i) => [rating, percents[i]]).sort(([, a], [, b]) => b - a)
    .filter(([, percent]) => percent > 0).map(([rating, percent]) => `${percent} % a ${rating}`);
  named[0] = named[0].replace(" a ", " would give a ");
  const listed = named.length === 1 ? named[0] : `${named.slice(0, -1).join(", ")} and ${named.at(-1)}`;
  return `of ${RATERS} raters like the dataset's, about ${listed} (their mean ${fixed(sharesMeanRating(shares), 2)})`;
}

/** fbp.scoring.shares_against_score: a sentence when the mean of a result's shares (as printed) lies
 * outside its crops' span (as printed, to two decimals), else "". */
export function sharesAgainstScore(result) {
  const average = pyRound(sharesMeanRating(result.shares), 2);
  const [low, high] = result.span.map((end) => pyRound(end, 2));
  if (low <= average && average <= high) return "";
  return ` Their mean is outside the span of the crops' scores, ${fixed(low, 2)} to ${fixed(high, 2)}: two heads of ` +
    "the model give the shares and the score, and they need not agree.";
}
