// Python's and NumPy's number semantics where the page must give Python's digits: rounding half to
// even, "{:.2f}" formatting, and NumPy's summation order.

/** Python's round(x) and NumPy's np.round(x): the nearest integer, halves to the even one. */
export function roundHalfEven(x) {
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : Math.round(x);
}

/** Whether x lies exactly halfway between two numbers of `digits` decimals (x = odd / 2^(digits+1)). */
function isDecimalTie(x, digits) {
  const scaled = x * 2 ** (digits + 1);
  return Number.isInteger(scaled) && scaled % 2 !== 0;
}

/** Python's f"{x:.{digits}f}": x rounded to `digits` decimals, an exact tie to the even last digit. */
export function fixed(x, digits) {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  if (!isDecimalTie(x, digits)) return x.toFixed(digits);
  const low = Math.floor(Math.abs(x) * 10 ** digits);  // exact: x has a short binary expansion
  const even = low % 2 === 0 ? low : low + 1;
  return (Math.sign(x) * even / 10 ** digits).toFixed(digits);
}

/** Python's round(x, digits) on a float. */
export function pyRound(x, digits) {
  return Number(fixed(x, digits));
}

/** NumPy's sum of float64 values along a contiguous axis: its pairwise summation (8 partial sums per
 * block of up to 128 values, blocks halved recursively), which sets the last bits of a mean. */
export function sum(values, start = 0, end = values.length) {
  const n = end - start;
  if (n < 8) {
    let total = 0;
    for (let i = start; i < end; i++) total += values[i];
    return total;
  }
  if (n <= 128) {
    const r = Array.from({ length: 8 }, (_, j) => values[start + j]);
    let i = start + 8;
    for (; i < end - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += values[i + j];
    let total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < end; i++) total += values[i];
    return total;
  }
  const half = Math.floor(n / 2) - (Math.floor(n / 2) % 8);
  return sum(values, start, start + half) + sum(values, start + half, end);
}

/** NumPy's mean of float64 values (np.mean of a 1-D array). */
export function mean(values) {
  return sum(values) / values.length;
}

/** NumPy's mean over the first axis of rows of equal length (np.mean(rows, axis=0)): summed in order. */
export function meanOfRows(rows) {
  return rows[0].map((_, k) => rows.reduce((total, row) => total + row[k], 0) / rows.length);
}

/** NumPy's sample standard deviation (np.std(values, ddof=1)). */
export function sampleSD(values) {
  const average = mean(values);
  return Math.sqrt(sum(values.map((v) => (v - average) * (v - average))) / (values.length - 1));
}
