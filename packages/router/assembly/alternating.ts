// AssemblyScript source of the host alternating solver's group loop in WebAssembly
// (src/ot/solvers/host-alternating-wasm.ts loads it; scripts/build-alternating-wasm.mjs compiles
// it into src/ot/solvers/alternating-module.ts).
//
// It runs, group after group, what host-alternating.ts runs for one group: the starts, the block
// ascent (column block, the rows' exact best response, the semi-dual evaluation), the polish
// steps, the best-iterate rule and the choice between two starts, in the same float32 steps and
// summation order. Every float32 operation of the JavaScript is `Math.fround` of a double
// operation on float32 values, which equals the float32 operation itself for + - * / and sqrt
// (the double result rounds to the same float32), so float32 arithmetic here gives the same
// bits; where the JavaScript mixes in a double that need not be a float32 value (gamma, the
// polish rate, the float64 sums of the cpu backend), the double operation is kept and rounded.
// The cosine and powers of the polish schedule are the JavaScript's own (imported).
//
// A group it does not handle bit for bit as the JavaScript does (a value that is not finite, a
// capacity b_j of -0) gets status 1 and the JavaScript solves it: a group's result depends on its
// own values only.

@external("env", "cos") declare function jsCos(x: f64): f64;
@external("env", "pow") declare function jsPow(x: f64, y: f64): f64;

/** lifted-dual.ts MAX_ACTIVE: the rows' best response looks at this many entry points at most. */
const MAX_ACTIVE: i32 = 16;
/** The unit roundoff of float32 (round to nearest), 2^-24. */
const U32: f64 = 5.9604644775390625e-8;
const INF32: f32 = Infinity;

// The problem and settings of the current solve (set by `prepare`).
let G: i32 = 0;
let MI: i32 = 0;
let NI: i32 = 0;
let KK: i32 = 0;
/** The stride of the support lists: KK + 1 (one spare entry for the branchless append). */
let KS: i32 = 0;
/**
 * Whether evaluations run four columns at a time ({@link evaluate4}): NI a multiple of 4 and at
 * most {@link SIMD_MAX_ROWS} rows (its ranks cost MI^2 comparisons per four columns, against the
 * scalar loop's insertion into the k best, about MI (1 + k / 4) steps per column).
 */
let SIMD4: bool = false;
/** The most rows for {@link evaluate4} (routing groups of a few dozen tokens). */
const SIMD_MAX_ROWS: i32 = 24;
let GAMMA: f64 = 0;
let F32S: bool = false;
let T: i32 = 0;
let CHECK: i32 = 1;
let TOL: f64 = 0;
let POLISH: f64 = 0;
let B1: f32 = 0;
let B1C: f32 = 0;
let B2: f32 = 0;
let B2C: f32 = 0;
let EPS: f32 = 0;

// Inputs (byte offsets): costT f32 [G, NI, MI], costRows f32 [G, MI, NI], a f32 [G, MI],
// b f32 [G, NI], alpha0 f32 [G, MI] (the starting row potentials, or with `solveGroups(1)` the
// rows' best response to beta0 f32 [G, NI]), mode i32 [G] (0: two starts, alpha0 then the
// cheapest column; 1: one start from alpha0; 2: one start from the cheapest column).
let pCostT: usize = 0;
let pCostRows: usize = 0;
let pA: usize = 0;
let pB: usize = 0;
let pAlpha0: usize = 0;
let pBeta0: usize = 0;
let pMode: usize = 0;
// Outputs: alpha f32 [G, MI], planT f32 [G, NI, MI], tau f32 [G, NI], value f64 [G],
// status i32 [G] (bit 0: the JavaScript solves this group; bit 1: the chosen start settled).
let pOutAlpha: usize = 0;
let pOutPlan: usize = 0;
let pOutTau: usize = 0;
let pOutValue: usize = 0;
let pStatus: usize = 0;
// Scratch.
let pEval: usize = 0; // three evaluations of EV_SIZE bytes
let EV_SIZE: usize = 0;
let EV_POS: usize = 0; // i32 [NI, KS]: each column's support, ascending rows
let EV_PVAL: usize = 0; // f32 [NI, KS]: the plan on it
let EV_TAU: usize = 0; // f32 [NI]
let EV_GRAD: usize = 0; // f64 [MI]
let EV_COUNT: usize = 0; // i32 [NI]
let EV_MINPOS: usize = 0; // f32 [NI]
let EV_VALUE: usize = 0; // f64
let EV_MASK: usize = 0; // v128 [NI / 4, MI]: the support masks of evaluate4 (when SIMD4)
let pX: usize = 0; // f32 [max(MI, NI)]
let pXc: usize = 0; // f32 [max(MI, NI)]
let pMark: usize = 0; // u8 [max(MI, NI)]
// The four-column evaluation's scratch (v128 rows): x, xc, rank (then the support mask), plan, the
// plan's two sum terms, and per rank the ranked xc and its row ([MI] each); per rank r < KK the
// support test.
let vX: usize = 0;
let vXc: usize = 0;
let vRank: usize = 0;
let vP: usize = 0;
let vT1: usize = 0;
let vT2: usize = 0;
let vOrd: usize = 0;
let vOrdRow: usize = 0;
let vSup: usize = 0;
let vTmp: usize = 0; // one v128
let pRanked: usize = 0; // f32 [max(MI, NI)]
let pOrder: usize = 0; // i32 [max(MI, NI)]
let pBeta: usize = 0; // f32 [NI]
let pEll: usize = 0; // f32 [NI]
let pBetaEll: usize = 0; // f32 [NI]
let pStart: usize = 0; // two starts of START_SIZE bytes: alpha, bestAlpha, m1, m2, next (f32 [MI] each)
let START_SIZE: usize = 0;
let pEnd: usize = 0;

@inline function align(p: usize): usize {
  return (p + 15) & ~(<usize>15);
}

/** Copies `n` float32 values (a loop: for a few rows it is quicker than memory.copy's call). */
@inline function copyF32(dst: usize, src: usize, n: i32): void {
  for (let i = 0; i < n; i++) setF32(dst, i, f32At(src, i));
}

@inline function acc(s: f64, x: f64): f64 {
  return F32S ? <f64><f32>(s + x) : s + x;
}

/**
 * host-projection.ts `insertRanked` on pRanked / pOrder: places `(v, idx)` in the descending list
 * from free rank `r`, moving strictly smaller values down (equal values keep the earlier first).
 */
@inline function insertRanked(r: i32, v: f32, idx: i32): void {
  while (r > 0 && v > f32At(pRanked, r - 1)) {
    setF32(pRanked, r, f32At(pRanked, r - 1));
    setI32(pOrder, r, i32At(pOrder, r - 1));
    r--;
  }
  setF32(pRanked, r, v);
  setI32(pOrder, r, idx);
}

/**
 * Writes `x_i = (pot_i - cost_i) / den` (i < n, float32 steps) into pX and returns their maximum
 * (the first of equal values, as `x_i > shift` keeps it), or NaN when some `x_i` is not finite.
 */
@inline function scaledLevels(pot: usize, cost: usize, n: i32, den: f32): f32 {
  let shift: f32 = -INF32;
  for (let i = 0; i < n; i++) {
    const x: f32 = (f32At(pot, i) - f32At(cost, i)) / den;
    if (!(x - x == 0)) return <f32>NaN;
    setF32(pX, i, x);
    if (x > shift) shift = x;
  }
  return shift;
}

@inline function f32At(base: usize, i: i32): f32 {
  return load<f32>(base + (<usize>i << 2));
}

@inline function setF32(base: usize, i: i32, v: f32): void {
  store<f32>(base + (<usize>i << 2), v);
}

@inline function i32At(base: usize, i: i32): i32 {
  return load<i32>(base + (<usize>i << 2));
}

@inline function setI32(base: usize, i: i32, v: i32): void {
  store<i32>(base + (<usize>i << 2), v);
}

@inline function f64At(base: usize, i: i32): f64 {
  return load<f64>(base + (<usize>i << 3));
}

@inline function setF64(base: usize, i: i32, v: f64): void {
  store<f64>(base + (<usize>i << 3), v);
}

/**
 * Lays out the buffers of a solve of `groups` groups of `mi` rows and `ni` columns and grows the
 * memory to hold them. Returns false when the memory cannot grow.
 */
export function prepare(
  groups: i32, mi: i32, ni: i32, k: i32, gamma: f64, f32Sums: bool, maxIterations: i32, checkEvery: i32, tolerance: f64, polishRate: f64,
  b1: f32, b1c: f32, b2: f32, b2c: f32, eps: f32,
): bool {
  G = groups;
  MI = mi;
  NI = ni;
  KK = k;
  KS = k + 1;
  SIMD4 = (ni & 3) == 0 && mi <= SIMD_MAX_ROWS;
  GAMMA = gamma;
  F32S = f32Sums;
  T = maxIterations;
  CHECK = checkEvery;
  TOL = tolerance;
  POLISH = polishRate;
  B1 = b1;
  B1C = b1c;
  B2 = b2;
  B2C = b2c;
  EPS = eps;
  const gm = <usize>groups * <usize>mi;
  const gn = <usize>groups * <usize>ni;
  const wide = <usize>(mi > ni ? mi : ni);
  let p = align(__heap_base);
  pCostT = p; p = align(p + gn * <usize>mi * 4);
  pCostRows = p; p = align(p + gm * <usize>ni * 4);
  pA = p; p = align(p + gm * 4);
  pB = p; p = align(p + gn * 4);
  pAlpha0 = p; p = align(p + gm * 4);
  pBeta0 = p; p = align(p + gn * 4);
  pMode = p; p = align(p + <usize>groups * 4);
  pOutAlpha = p; p = align(p + gm * 4);
  pOutPlan = p; p = align(p + gn * <usize>mi * 4);
  pOutTau = p; p = align(p + gn * 4);
  pOutValue = p; p = align(p + <usize>groups * 8);
  pStatus = p; p = align(p + <usize>groups * 4);
  const nk = <usize>ni * <usize>(k + 1);
  EV_POS = 0;
  EV_PVAL = align(EV_POS + nk * 4);
  EV_TAU = align(EV_PVAL + nk * 4);
  EV_GRAD = align(EV_TAU + <usize>ni * 4);
  EV_COUNT = align(EV_GRAD + <usize>mi * 8);
  EV_MINPOS = align(EV_COUNT + <usize>ni * 4);
  EV_VALUE = align(EV_MINPOS + <usize>ni * 4);
  EV_MASK = align(EV_VALUE + 8);
  EV_SIZE = align(EV_MASK + (SIMD4 ? (<usize>(ni >> 2) * <usize>mi) << 4 : 0));
  pEval = p; p = align(p + 3 * EV_SIZE);
  pX = p; p = align(p + wide * 4);
  pXc = p; p = align(p + wide * 4);
  pMark = p; p = align(p + wide);
  const rows16 = <usize>mi << 4;
  const ranks16 = <usize>k << 4;
  vX = p; p += rows16;
  vXc = p; p += rows16;
  vRank = p; p += rows16;
  vP = p; p += rows16;
  vT1 = p; p += rows16;
  vT2 = p; p += rows16;
  vOrd = p; p += rows16;
  vOrdRow = p; p += rows16;
  vSup = p; p += ranks16;
  vTmp = p; p += 16;
  pRanked = p; p = align(p + wide * 4);
  pOrder = p; p = align(p + wide * 4);
  pBeta = p; p = align(p + <usize>ni * 4);
  pEll = p; p = align(p + <usize>ni * 4);
  pBetaEll = p; p = align(p + <usize>ni * 4);
  START_SIZE = align(<usize>mi * 4) * 5;
  pStart = p; p = align(p + 2 * START_SIZE);
  pEnd = p;
  const have = <usize>memory.size() << 16;
  if (pEnd > have) {
    const pages = <i32>((pEnd - have + 65535) >> 16);
    if (memory.grow(pages) < 0) return false;
  }
  return true;
}

/** The byte offset of buffer `which` (0 costT, 1 costRows, 2 a, 3 b, 4 alpha0, 5 mode, 6 out alpha, 7 out planT, 8 out tau, 9 out value, 10 status, 11 beta0). */
export function offset(which: i32): usize {
  switch (which) {
    case 0: return pCostT;
    case 1: return pCostRows;
    case 2: return pA;
    case 3: return pB;
    case 4: return pAlpha0;
    case 5: return pMode;
    case 6: return pOutAlpha;
    case 7: return pOutPlan;
    case 8: return pOutTau;
    case 9: return pOutValue;
    case 10: return pStatus;
    case 11: return pBeta0;
    default: return 0;
  }
}

/**
 * host-evaluate.ts `HostSemidualEval.evaluate` (its `columnFast` for every column) of group g at
 * `alpha` into evaluation block `e`. Returns false when an entry `x` is not finite (the
 * JavaScript then takes its general loop: the group falls back).
 */
function evaluate(g: i32, alpha: usize, e: usize): bool {
  const aBase = pA + (<usize>(g * MI) << 2);
  const grad = e + EV_GRAD;
  let sAlpha: f64 = 0;
  for (let i = 0; i < MI; i++) {
    sAlpha = acc(sAlpha, <f64>(f32At(alpha, i) * f32At(aBase, i)));
    setF64(grad, i, 0);
  }
  if (!(SIMD4 ? evaluate4(g, alpha, e) : evaluateScalar(g, alpha, e))) return false;
  for (let i = 0; i < MI; i++) setF64(grad, i, <f64>(f32At(aBase, i) - <f32>f64At(grad, i)));
  const halfGamma = <f32>(GAMMA / 2);
  store<f64>(e + EV_VALUE, <f64>((<f32>sAlpha - <f32>evPlanZ) + halfGamma * <f32>evSquare));
  return true;
}

/** The columns' sums of {@link evaluate}: `<T, alpha - C>` and `||T||^2`, in the scalar loop's order. */
let evPlanZ: f64 = 0;
let evSquare: f64 = 0;

/** The columns of {@link evaluate} one by one: the plan, the supports and the gradient's sums (before `a - `), `evPlanZ`, `evSquare`. */
function evaluateScalar(g: i32, alpha: usize, e: usize): bool {
  const grad = e + EV_GRAD;
  let planZ: f64 = 0;
  let square: f64 = 0;
  for (let j = 0; j < NI; j++) {
    const bj = f32At(pB, g * NI + j);
    const den = <f32>(<f64>(bj > 0 ? bj : <f32>1) * GAMMA);
    const c0 = pCostT + (<usize>((g * NI + j) * MI) << 2);
    const shift = scaledLevels(alpha, c0, MI, den);
    if (shift != shift) return false;
    // The k largest of xc = x - shift, descending, ties by the lower row (topKPositions' order).
    let filled = 0;
    let last: f32 = -INF32;
    for (let i = 0; i < MI; i++) {
      const v: f32 = f32At(pX, i) - shift;
      setF32(pXc, i, v);
      if (filled == KK && !(v > last)) continue;
      insertRanked(filled == KK ? KK - 1 : filled++, v, i);
      last = f32At(pRanked, KK - 1);
    }
    const pos = e + EV_POS + (<usize>(j * KS) << 2);
    const pval = e + EV_PVAL + (<usize>(j * KS) << 2);
    let cs: f32 = 0;
    let count = 0;
    for (let r = 0; r < KK; r++) {
      const p = i32At(pOrder, r);
      const v = f32At(pXc, p);
      cs = cs + v;
      if (v - (cs - 1) / <f32>(r + 1) > 0) {
        // The support in ascending row order (insertion).
        let q = count++;
        while (q > 0 && i32At(pos, q - 1) > p) {
          setI32(pos, q, i32At(pos, q - 1));
          q--;
        }
        setI32(pos, q, p);
      }
    }
    let sum: f64 = 0;
    for (let q = 0; q < count; q++) sum = acc(sum, <f64>f32At(pXc, i32At(pos, q)));
    const tauC: f32 = (<f32>sum - 1) / <f32>max<i32>(count, 1);
    setF32(e + EV_TAU, j, tauC + shift);
    let minPositive: f32 = INF32;
    for (let q = 0; q < count; q++) {
      const i = i32At(pos, q);
      const p: f32 = bj * max<f32>(f32At(pXc, i) - tauC, 0);
      setF32(pval, q, p);
      if (p != 0) {
        planZ = acc(planZ, <f64>(p * (f32At(alpha, i) - f32At(c0, i))));
        square = acc(square, <f64>(p * p));
        setF64(grad, i, acc(f64At(grad, i), <f64>p));
        if (p > 0 && p < minPositive) minPositive = p;
      }
    }
    setI32(e + EV_COUNT, j, count);
    setF32(e + EV_MINPOS, j, minPositive);
  }
  evPlanZ = planZ;
  evSquare = square;
  return true;
}

/**
 * The columns of {@link evaluate} four at a time (SIMD4), one column per SIMD lane, each
 * lane in the scalar loop's float32 steps: the same maxima (pmax keeps the first of equal
 * values, as `xi > shift` does), the k largest of xc by rank counting (ties: the lower row
 * first, topKPositions' order), the support test in rank order, the support's sum in ascending
 * rows (adding +0 for rows off the support, which leaves a sum of values <= 0 unchanged), and
 * then the value's and the gradient's sums in the scalar loop's order (column by column, rows
 * ascending; the plan's zeros add +0 or -0, which leave those sums, never -0, unchanged).
 */
function evaluate4(g: i32, alpha: usize, e: usize): bool {
  const grad = e + EV_GRAD;
  let planZ: f64 = 0;
  let square: f64 = 0;
  const zero = f32x4.splat(0);
  const one = f32x4.splat(1);
  for (let j0 = 0; j0 < NI; j0 += 4) {
    const bv = v128.load(pB + (<usize>(g * NI + j0) << 2));
    // den = f32((b > 0 ? b : 1) * gamma), lane by lane (gamma need not be a float32 value).
    for (let l = 0; l < 4; l++) {
      const bj = f32At(pB, g * NI + j0 + l);
      setF32(vTmp, l, <f32>(<f64>(bj > 0 ? bj : <f32>1) * GAMMA));
    }
    const den = v128.load(vTmp);
    let shift = f32x4.splat(-INF32);
    let bad = i32x4.splat(0);
    for (let i = 0; i < MI; i++) {
      const crow = v128.load(pCostRows + (<usize>((g * MI + i) * NI + j0) << 2));
      const x = f32x4.div(f32x4.sub(f32x4.splat(f32At(alpha, i)), crow), den);
      bad = v128.or(bad, v128.not(f32x4.eq(f32x4.sub(x, x), zero)));
      v128.store(vX + (<usize>i << 4), x);
      shift = f32x4.pmax(shift, x);
    }
    if (v128.any_true(bad)) return false;
    for (let i = 0; i < MI; i++) v128.store(vXc + (<usize>i << 4), f32x4.sub(v128.load(vX + (<usize>i << 4)), shift));
    // Ranks: rows ahead of row i (larger, or equal and lower).
    for (let i = 0; i < MI; i++) {
      const v = v128.load(vXc + (<usize>i << 4));
      let r = i32x4.splat(0);
      for (let i2 = 0; i2 < i; i2++) r = i32x4.sub(r, f32x4.ge(v128.load(vXc + (<usize>i2 << 4)), v));
      for (let i2 = i + 1; i2 < MI; i2++) r = i32x4.sub(r, f32x4.gt(v128.load(vXc + (<usize>i2 << 4)), v));
      v128.store(vRank + (<usize>i << 4), r);
    }
    // Every row at its rank, per lane (the ranks of a lane are a permutation of the rows).
    for (let i = 0; i < MI; i++) {
      const rb = vRank + (<usize>i << 4);
      const xb = vXc + (<usize>i << 4);
      for (let l = 0; l < 4; l++) {
        const at = (<usize>load<i32>(rb + (<usize>l << 2)) << 4) + (<usize>l << 2);
        store<f32>(vOrd + at, load<f32>(xb + (<usize>l << 2)));
        store<i32>(vOrdRow + at, i);
      }
    }
    let cs = zero;
    let count = i32x4.splat(0);
    for (let r = 0; r < KK; r++) {
      const v = v128.load(vOrd + (<usize>r << 4));
      cs = f32x4.add(cs, v);
      const test = f32x4.gt(f32x4.sub(v, f32x4.div(f32x4.sub(cs, one), f32x4.splat(<f32>(r + 1)))), zero);
      v128.store(vSup + (<usize>r << 4), test);
      count = i32x4.sub(count, test);
    }
    // The support mask per row (vRank's rows now): the test of the row's rank when below k.
    for (let i = 0; i < MI; i++) v128.store(vRank + (<usize>i << 4), i32x4.splat(0));
    for (let r = 0; r < KK; r++) {
      const rb = vOrdRow + (<usize>r << 4);
      const sb = vSup + (<usize>r << 4);
      for (let l = 0; l < 4; l++) {
        const lo = <usize>l << 2;
        store<i32>(vRank + (<usize>load<i32>(rb + lo) << 4) + lo, load<i32>(sb + lo));
      }
    }
    const masks = e + EV_MASK + (<usize>((j0 >> 2) * MI) << 4);
    for (let i = 0; i < MI; i++) v128.store(masks + (<usize>i << 4), v128.load(vRank + (<usize>i << 4)));
    let sumV = zero;
    const f64Sums = !F32S;
    if (!f64Sums) {
      for (let i = 0; i < MI; i++) {
        sumV = f32x4.add(sumV, v128.bitselect(v128.load(vXc + (<usize>i << 4)), zero, v128.load(vRank + (<usize>i << 4))));
      }
    }
    const countF = f32x4.convert_i32x4_s(i32x4.max_s(count, i32x4.splat(1)));
    let tauC: v128;
    if (f64Sums) {
      // float64 sums (the cpu backend's reductions): column by column, rows ascending.
      for (let l = 0; l < 4; l++) {
        let sum: f64 = 0;
        for (let i = 0; i < MI; i++) {
          if (load<i32>(vRank + (<usize>i << 4) + (<usize>l << 2)) != 0) sum += <f64>load<f32>(vXc + (<usize>i << 4) + (<usize>l << 2));
        }
        setF32(vTmp, l, <f32>sum);
      }
      tauC = f32x4.div(f32x4.sub(v128.load(vTmp), one), countF);
    } else {
      tauC = f32x4.div(f32x4.sub(sumV, one), countF);
    }
    v128.store(e + EV_TAU + (<usize>j0 << 2), f32x4.add(tauC, shift));
    let minPos = f32x4.splat(INF32);
    const infV = f32x4.splat(INF32);
    for (let i = 0; i < MI; i++) {
      const o = <usize>i << 4;
      const member = v128.load(vRank + o);
      const xc = v128.load(vXc + o);
      const p = v128.bitselect(f32x4.mul(bv, f32x4.max(f32x4.sub(xc, tauC), zero)), zero, member);
      v128.store(vP + o, p);
      const az = f32x4.sub(f32x4.splat(f32At(alpha, i)), v128.load(pCostRows + (<usize>((g * MI + i) * NI + j0) << 2)));
      v128.store(vT1 + o, f32x4.mul(p, az));
      v128.store(vT2 + o, f32x4.mul(p, p));
      minPos = f32x4.min(minPos, v128.bitselect(p, infV, f32x4.gt(p, zero)));
    }
    v128.store(e + EV_MINPOS + (<usize>j0 << 2), minPos);
    // Per column (in order): the support list (ascending rows, appended without branches), the
    // plan on it, the value's sums.
    for (let l = 0; l < 4; l++) {
      const j = j0 + l;
      const pos = e + EV_POS + (<usize>(j * KS) << 2);
      const pval = e + EV_PVAL + (<usize>(j * KS) << 2);
      const lo = <usize>l << 2;
      let c = 0;
      for (let i = 0; i < MI; i++) {
        const o = (<usize>i << 4) + lo;
        const at = <usize>c << 2; // c <= KK: the lists hold KK + 1 entries
        store<i32>(pos + at, i);
        store<f32>(pval + at, load<f32>(vP + o));
        c += load<i32>(vRank + o) & 1;
      }
      for (let q = 0; q < c; q++) {
        if (f32At(pval, q) != 0) {
          const o = (<usize>i32At(pos, q) << 4) + lo;
          planZ = acc(planZ, <f64>load<f32>(vT1 + o));
          square = acc(square, <f64>load<f32>(vT2 + o));
        }
      }
      setI32(e + EV_COUNT, j, c);
    }
    // The gradient's sums: per row, the columns in order.
    for (let i = 0; i < MI; i++) {
      let gi = f64At(grad, i);
      const o = vP + (<usize>i << 4);
      gi = acc(gi, <f64>load<f32>(o));
      gi = acc(gi, <f64>load<f32>(o + 4));
      gi = acc(gi, <f64>load<f32>(o + 8));
      gi = acc(gi, <f64>load<f32>(o + 12));
      setF64(grad, i, gi);
    }
  }
  evPlanZ = planZ;
  evSquare = square;
  return true;
}

/** host-alternating.ts `columnBlockHost`: the column block at `alpha` from its evaluation `e` into pBeta, pEll. */
function columnBlock(g: i32, e: usize, alpha: usize): void {
  if (SIMD4) {
    // Four columns at a time: the largest alpha_i - C_ij off the support (members count as -inf;
    // max of the same values in another order, and max(-0, +0) = +0 either way).
    const negInf = f32x4.splat(-INF32);
    for (let j0 = 0; j0 < NI; j0 += 4) {
      const masks = e + EV_MASK + (<usize>((j0 >> 2) * MI) << 4);
      let offMax = negInf;
      for (let i = 0; i < MI; i++) {
        const d = f32x4.sub(f32x4.splat(f32At(alpha, i)), v128.load(pCostRows + (<usize>((g * MI + i) * NI + j0) << 2)));
        offMax = f32x4.max(offMax, v128.bitselect(negInf, d, v128.load(masks + (<usize>i << 4))));
      }
      v128.store(vTmp, offMax);
      for (let l = 0; l < 4; l++) columnLevels(g, e, j0 + l, f32At(vTmp, l));
    }
    return;
  }
  for (let j = 0; j < NI; j++) {
    let offMax: f32 = -INF32;
    const c0 = pCostT + (<usize>((g * NI + j) * MI) << 2);
    // The rows off the support (ascending, so one pointer walks it).
    const pos = e + EV_POS + (<usize>(j * KS) << 2);
    const count = i32At(e + EV_COUNT, j);
    let q = 0;
    let next = count > 0 ? i32At(pos, 0) : MI;
    for (let i = 0; i < MI; i++) {
      if (i == next) {
        q++;
        next = q < count ? i32At(pos, q) : MI;
        continue;
      }
      offMax = max<f32>(offMax, f32At(alpha, i) - f32At(c0, i));
    }
    columnLevels(g, e, j, offMax);
  }
}

/** Column j's block from its largest off-support `alpha_i - C_ij` (`columnBlockHost`'s last steps): pBeta[j], pEll[j]. */
@inline function columnLevels(g: i32, e: usize, j: i32, offMax: f32): void {
  const beta = <f32>(<f64>(f32At(e + EV_TAU, j) * f32At(pB, g * NI + j)) * -GAMMA);
  const minPos = f32At(e + EV_MINPOS, j);
  const full = i32At(e + EV_COUNT, j) >= KK && minPos < INF32;
  const upper = <f32>(<f64>minPos * GAMMA);
  const lower = min<f32>(max<f32>(offMax + beta, 0), upper);
  setF32(pBeta, j, beta);
  setF32(pEll, j, full ? (upper + lower) * <f32>0.5 : 0);
}

/**
 * host-alternating.ts `rankFirstFour`: the 4 largest levels of cost row `c0` into pRanked /
 * pOrder; returns the smallest level, or NaN when a level is not finite.
 */
function rankFirstFour(c0: usize): f32 {
  let v0: f32 = -INF32;
  let v1: f32 = -INF32;
  let v2: f32 = -INF32;
  let v3: f32 = -INF32;
  let j0 = 0;
  let j1 = 0;
  let j2 = 0;
  let j3 = 0;
  let least: f32 = INF32;
  for (let j = 0; j < NI; j++) {
    const v: f32 = f32At(pBetaEll, j) - f32At(c0, j);
    if (!(v - v == 0)) return <f32>NaN;
    if (v < least) least = v;
    if (!(v > v3)) continue;
    if (v > v2) {
      v3 = v2;
      j3 = j2;
      if (v > v1) {
        v2 = v1;
        j2 = j1;
        if (v > v0) {
          v1 = v0;
          j1 = j0;
          v0 = v;
          j0 = j;
        } else {
          v1 = v;
          j1 = j;
        }
      } else {
        v2 = v;
        j2 = j;
      }
    } else {
      v3 = v;
      j3 = j;
    }
  }
  setF32(pRanked, 0, v0);
  setF32(pRanked, 1, v1);
  setF32(pRanked, 2, v2);
  setF32(pRanked, 3, v3);
  setI32(pOrder, 0, j0);
  setI32(pOrder, 1, j1);
  setI32(pOrder, 2, j2);
  setI32(pOrder, 3, j3);
  return least;
}

/**
 * host-alternating.ts `rankRow`: the K largest levels of cost row `c0` into pRanked / pOrder.
 * Returns false when a level is not finite (the group falls back).
 */
function rankRow(c0: usize, ranks: i32): bool {
  let filled = 0;
  for (let j = 0; j < NI; j++) {
    const v: f32 = f32At(pBetaEll, j) - f32At(c0, j);
    if (!(v - v == 0)) return false;
    if (filled == ranks && !(v > f32At(pRanked, ranks - 1))) continue;
    insertRanked(filled == ranks ? ranks - 1 : filled++, v, j);
  }
  return true;
}

/**
 * host-alternating.ts `rowBestResponseHost`: the rows' exact best response of the lifted dual to
 * (pBeta, pEll) into `out` (f32 [MI]). Returns false when a level is not finite.
 */
function rowBestResponse(g: i32, out: usize): bool {
  const K = NI < MAX_ACTIVE ? NI : MAX_ACTIVE;
  let ellSum: f64 = 0;
  let ellValid = true;
  for (let j = 0; j < NI; j++) {
    const ell = f32At(pEll, j);
    setF32(pBetaEll, j, f32At(pBeta, j) - ell);
    if (!(ell >= 0 && ell < INF32)) ellValid = false;
    ellSum += <f64>ell;
  }
  const shortcut = ellValid && K > 4;
  const aBase = pA + (<usize>(g * MI) << 2);
  for (let i = 0; i < MI; i++) {
    const c0 = pCostRows + (<usize>((g * MI + i) * NI) << 2);
    const ga = <f32>(<f64>f32At(aBase, i) * GAMMA);
    let cs: f32 = 0;
    let count = 0;
    let csR: f64 = 0;
    let minNes: f32 = INF32;
    if (shortcut) {
      const least = rankFirstFour(c0);
      if (least != least) return false;
      let wSum: f64 = 0;
      for (let r = 0; r < 3; r++) {
        const nes = f32At(pRanked, r);
        const w: f32 = f32At(pEll, i32At(pOrder, r)) + nes;
        cs = cs + w;
        wSum += <f64>w;
        if ((ga + <f32>r * nes) - (cs - w) > 0) {
          count++;
          csR = F32S ? <f64><f32>(csR + <f64>w) : csR + <f64>w;
          if (nes < minNes) minNes = nes;
        }
      }
      const r0 = <f64>f32At(pRanked, 0);
      const N: f64 = Math.max(Math.abs(r0), Math.abs(<f64>least));
      const Kd = <f64>K;
      const bound: f64 = 2 * U32 * (Math.abs(<f64>ga) + 2.01 * Kd * N + (Kd + 3.01) * 1.01 * (ellSum + Kd * N)) + 1e-30;
      if (<f64>ga + 3 * <f64>f32At(pRanked, 3) - wSum + bound < 0) {
        setF32(out, i, count > 0 ? max<f32>(-minNes, (ga - <f32>csR) / <f32>count) : <f32>(-r0 - GAMMA));
        continue;
      }
      cs = 0;
      count = 0;
      csR = 0;
      minNes = INF32;
    }
    if (!rankRow(c0, K)) return false;
    for (let r = 0; r < K; r++) {
      const nes = f32At(pRanked, r);
      const w: f32 = f32At(pEll, i32At(pOrder, r)) + nes;
      cs = cs + w;
      if ((ga + <f32>r * nes) - (cs - w) > 0) {
        count++;
        csR = F32S ? <f64><f32>(csR + <f64>w) : csR + <f64>w;
        if (nes < minNes) minNes = nes;
      }
    }
    setF32(out, i, count > 0 ? max<f32>(-minNes, (ga - <f32>csR) / <f32>count) : <f32>(-<f64>f32At(pRanked, 0) - GAMMA));
  }
  return true;
}

/**
 * host-alternating.ts `rowBestResponseFree` with host-projection.ts `projectSlice` (k = NI): the
 * rows' best response to group g's column potentials beta0, ignoring the bound, into `out`
 * (`alpha_i = -gamma a_i tau_i`, tau_i the sparsemax threshold of `(beta0 - C[i, :]) / (gamma a_i)`).
 * Returns false when a level is not finite (the group falls back).
 */
function rowBestResponseFree(g: i32, out: usize): bool {
  const beta = pBeta0 + (<usize>(g * NI) << 2);
  for (let i = 0; i < MI; i++) {
    const ai = f32At(pA, g * MI + i);
    const den = <f32>(<f64>(ai > 0 ? ai : <f32>1) * GAMMA);
    const c0 = pCostRows + (<usize>((g * MI + i) * NI) << 2);
    const shift = scaledLevels(beta, c0, NI, den);
    if (shift != shift) return false;
    // All levels, descending, ties by the lower column (topKPositions with k = NI).
    for (let j = 0; j < NI; j++) {
      const v: f32 = f32At(pX, j) - shift;
      setF32(pXc, j, v);
      store<u8>(pMark + <usize>j, 0);
      insertRanked(j, v, j);
    }
    let cs: f32 = 0;
    let count = 0;
    for (let r = 0; r < NI; r++) {
      const p = i32At(pOrder, r);
      const v = f32At(pXc, p);
      cs = cs + v;
      if (v - (cs - 1) / <f32>(r + 1) > 0) {
        count++;
        store<u8>(pMark + <usize>p, 1);
      }
    }
    // The support's sum in ascending column order.
    let sum: f64 = 0;
    for (let j = 0; j < NI; j++) if (load<u8>(pMark + <usize>j)) sum = acc(sum, <f64>f32At(pXc, j));
    const tauC: f32 = (<f32>sum - 1) / <f32>max<i32>(count, 1);
    const tau: f32 = tauC + shift;
    setF32(out, i, <f32>(<f64>(tau * ai) * -GAMMA));
  }
  return true;
}

// One start's result (runStart).
let bestValue: f64 = 0;
let settled: bool = false;
let bestEv: usize = 0;

/**
 * host-alternating.ts `runStart`: one start's block ascent and polish from `st`'s alpha, with
 * evaluation blocks `evA`, `evB` taking turns. Sets bestValue, settled, bestEv. Returns false
 * when the group falls back.
 */
function runStart(g: i32, evA: usize, evB: usize, st: usize): bool {
  const stride = START_SIZE / 5;
  const alpha = st;
  const bestAlpha = st + stride;
  const m1 = st + 2 * stride;
  const m2 = st + 3 * stride;
  const next = st + 4 * stride;
  const aBase = pA + (<usize>(g * MI) << 2);
  let sumA: f64 = 0;
  for (let i = 0; i < MI; i++) sumA = acc(sumA, <f64>f32At(aBase, i));
  const lr0: f32 = (<f32>sumA / <f32>MI) * <f32>(POLISH * GAMMA);
  let ev = evA;
  if (!evaluate(g, alpha, ev)) return false;
  let best = ev;
  copyF32(bestAlpha, alpha, MI);
  let bestV = load<f64>(ev + EV_VALUE);
  let checkValue = bestV;
  let stallAt: i32 = i32.MAX_VALUE;
  for (let i = 0; i < MI; i++) {
    setF32(m1, i, 0);
    setF32(m2, i, 0);
  }
  let done = false;
  for (let t = 1; t <= T; t++) {
    if (stallAt < t) {
      const tp = t - stallAt > 1 ? t - stallAt : 1;
      const span = T - stallAt > 1 ? T - stallAt : 1;
      const pi32 = <f64><f32>Math.PI;
      const angle = <f64><f32>(pi32 * <f64><f32>(<f64>(tp - 1) / <f64>span));
      const lr: f32 = lr0 * (<f32>0.5 * (<f32>1 + <f32>jsCos(angle)));
      const c1: f32 = <f32>1 - <f32>jsPow(<f64>B1, <f64>tp);
      const c2: f32 = <f32>1 - <f32>jsPow(<f64>B2, <f64>tp);
      const grad = ev + EV_GRAD;
      for (let i = 0; i < MI; i++) {
        const gi = <f32>f64At(grad, i);
        const m = f32At(m1, i) * B1 + gi * B1C;
        const v = f32At(m2, i) * B2 + (gi * gi) * B2C;
        setF32(m1, i, m);
        setF32(m2, i, v);
        setF32(next, i, f32At(alpha, i) + lr * ((m / c1) / (sqrt<f32>(v / c2) + EPS)));
      }
    } else {
      columnBlock(g, ev, alpha);
      if (!rowBestResponse(g, next)) return false;
    }
    copyF32(alpha, next, MI);
    ev = best == evA ? evB : evA;
    if (!evaluate(g, alpha, ev)) return false;
    const value = load<f64>(ev + EV_VALUE);
    if (value > bestV) {
      copyF32(bestAlpha, alpha, MI);
      best = ev;
      bestV = value;
    }
    if (t % CHECK == 0 || t == T) {
      const stalled = stallAt < i32.MAX_VALUE;
      done = Math.abs(bestV - checkValue) <= TOL * Math.max(Math.abs(bestV), 1);
      if (!stalled) checkValue = bestV;
      if (t < T && done && !stalled) {
        stallAt = t;
        copyF32(alpha, bestAlpha, MI);
        ev = best;
      }
    }
  }
  bestValue = bestV;
  settled = done;
  bestEv = best;
  return true;
}

/** Writes group g's cheapest-column start `alpha_i = min_j C_ij` into `out`. */
function cheapestStart(g: i32, out: usize): void {
  for (let i = 0; i < MI; i++) {
    const c0 = pCostRows + (<usize>((g * MI + i) * NI) << 2);
    let c: f32 = INF32;
    for (let j = 0; j < NI; j++) c = min<f32>(c, f32At(c0, j));
    setF32(out, i, c);
  }
}

/** Whether group g's values are ones the group loop here handles as the JavaScript does. */
function groupSupported(g: i32): bool {
  for (let i = 0; i < MI; i++) {
    const ga = <f32>(<f64>f32At(pA, g * MI + i) * GAMMA);
    if (!(ga - ga == 0)) return false;
  }
  for (let j = 0; j < NI; j++) {
    const bj = f32At(pB, g * NI + j);
    // columnFast's condition: a finite +0 or positive b_j.
    if (!(bj - bj == 0) || bj < 0 || (bj == 0 && (reinterpret<u32>(bj) >> 31) != 0)) return false;
  }
  const n = MI * NI;
  const c0 = pCostRows + (<usize>(g * n) << 2);
  for (let q = 0; q < n; q++) {
    const c = f32At(c0, q);
    if (!(c - c == 0)) return false;
  }
  return true;
}

/**
 * Solves every group (see the file comment), each from its alpha0 or, with `fromBeta0` 1, from
 * the rows' best response to its beta0 (written into alpha0). Returns the number of groups left
 * to the JavaScript.
 */
export function solveGroups(fromBeta0: i32): i32 {
  const evs0 = pEval;
  const evs1 = pEval + EV_SIZE;
  const evs2 = pEval + 2 * EV_SIZE;
  const st0 = pStart;
  const st1 = pStart + START_SIZE;
  const bytes = <usize>MI << 2;
  let fallback = 0;
  for (let g = 0; g < G; g++) {
    const mode = i32At(pMode, g);
    const alpha0 = pAlpha0 + (<usize>(g * MI) << 2);
    let ok = groupSupported(g);
    if (ok && fromBeta0) ok = rowBestResponseFree(g, alpha0);
    let resultSt: usize = st0;
    let resultEv: usize = 0;
    let resultSettled = false;
    if (ok && mode == 0) {
      memory.copy(st0, alpha0, bytes);
      ok = runStart(g, evs0, evs1, st0);
      if (ok) {
        const firstValue = bestValue;
        const firstEv = bestEv;
        const firstSettled = settled;
        cheapestStart(g, st1);
        ok = runStart(g, firstEv == evs0 ? evs1 : evs0, evs2, st1);
        if (ok) {
          if (firstValue >= bestValue) {
            resultSt = st0;
            resultEv = firstEv;
            resultSettled = firstSettled;
          } else {
            resultSt = st1;
            resultEv = bestEv;
            resultSettled = settled;
          }
        }
      }
    } else if (ok) {
      if (mode == 2) cheapestStart(g, st0);
      else memory.copy(st0, alpha0, bytes);
      ok = runStart(g, evs0, evs1, st0);
      resultEv = bestEv;
      resultSettled = settled;
    }
    if (!ok) {
      setI32(pStatus, g, 1);
      fallback++;
      continue;
    }
    setI32(pStatus, g, resultSettled ? 2 : 0);
    // The output at the best iterate (host-output.ts storeSolution reads these).
    memory.copy(pOutAlpha + (<usize>(g * MI) << 2), resultSt + START_SIZE / 5, bytes);
    const planOut = pOutPlan + (<usize>(g * NI * MI) << 2);
    memory.fill(planOut, 0, <usize>(NI * MI) << 2);
    for (let j = 0; j < NI; j++) {
      const count = i32At(resultEv + EV_COUNT, j);
      const pos = resultEv + EV_POS + (<usize>(j * KS) << 2);
      const pval = resultEv + EV_PVAL + (<usize>(j * KS) << 2);
      for (let q = 0; q < count; q++) setF32(planOut, j * MI + i32At(pos, q), f32At(pval, q));
    }
    memory.copy(pOutTau + (<usize>(g * NI) << 2), resultEv + EV_TAU, <usize>NI << 2);
    setF64(pOutValue, g, load<f64>(resultEv + EV_VALUE));
  }
  return fallback;
}
