// The WebAssembly text of the aggregation kernels (docs/kernels.md). A generator rather than a .wat file because the
// unrolled parts (eight inputs per pass, four partners per pass) are written once here as loops over their index.
// `npm run kernels` assembles this text with wabt into kernels-binary.ts, and a test fails when that file is not
// the assembly of this text, so the two cannot drift apart.
//
// Every kernel works on one column block of the inputs, already copied into the module's memory (rows `stride`
// bytes apart, each a whole number of 16-byte vectors, padded with zeros): the block stays in cache while every
// output row and every pair uses it. Pointers are byte offsets into the memory.

/** Inputs folded per pass of `axpy8`: the float32 partial sum of this many products is added to a float64 sum. */
export const AXPY_GROUP = 8;
/** Vectors (of 4 coordinates) summed in float32 per pair by `dist4` before the partial sum is added in float64. */
export const DISTANCE_RUN = 8;

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** acc[v] += Σ_k c_k · x_k[v] for v < nvec: float32 products summed in order k = 0…7, then added in float64. */
function axpy8(): string {
  const k = range(AXPY_GROUP);
  return `
  (func (export "axpy8") (param $acc i32) (param $nvec i32)
    ${k.map((i) => `(param $x${i} i32)`).join(' ')}
    ${k.map((i) => `(param $c${i} f32)`).join(' ')}
    (local $v i32) (local $off i32) (local $a i32) (local $s v128)
    ${k.map((i) => `(local $k${i} v128)`).join(' ')}
    ${k.map((i) => `(local.set $k${i} (f32x4.splat (local.get $c${i})))`).join('\n    ')}
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $v) (local.get $nvec)))
        (local.set $off (i32.shl (local.get $v) (i32.const 4)))
        (local.set $s (f32x4.mul (local.get $k0) (v128.load (i32.add (local.get $x0) (local.get $off)))))
        ${k.slice(1).map((i) => `(local.set $s (f32x4.add (local.get $s) (f32x4.mul (local.get $k${i}) (v128.load (i32.add (local.get $x${i}) (local.get $off))))))`).join('\n        ')}
        ;; acc holds 4 float64 per vector: coordinates 0,1 then 2,3
        (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $v) (i32.const 5))))
        (v128.store (local.get $a) (f64x2.add (v128.load (local.get $a)) (f64x2.promote_low_f32x4 (local.get $s))))
        (v128.store offset=16 (local.get $a) (f64x2.add (v128.load offset=16 (local.get $a))
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $s) (local.get $s)))))
        (local.set $v (i32.add (local.get $v) (i32.const 1)))
        (br $next)))
  )`;
}

/** out[v] = float32(acc[v]) for v < nvec, 4 coordinates per vector. */
function demote(): string {
  return `
  (func (export "demote") (param $acc i32) (param $nvec i32) (param $out i32)
    (local $v i32) (local $a i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $v) (local.get $nvec)))
        (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $v) (i32.const 5))))
        (v128.store (i32.add (local.get $out) (i32.shl (local.get $v) (i32.const 4)))
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (v128.load (local.get $a)))
            (f32x4.demote_f64x2_zero (v128.load offset=16 (local.get $a)))))
        (local.set $v (i32.add (local.get $v) (i32.const 1)))
        (br $next)))
  )`;
}

/**
 * out[k] = Σ_v ‖a[v] − b_k[v]‖² for the four partners k = 0…3 (float64 sums). Differences and squares in float32,
 * summed in float32 over runs of DISTANCE_RUN vectors, each run's four lanes added in float64; every pair's sum is
 * computed by exactly the same operations whichever slot it takes, so a pair's distance never depends on its company.
 */
function dist4(): string {
  const k = range(4);
  return `
  (func (export "dist4") (param $a i32) ${k.map((i) => `(param $b${i} i32)`).join(' ')} (param $nvec i32) (param $out i32)
    (local $v i32) (local $end i32) (local $off i32) (local $x v128) (local $t v128)
    ${k.map((i) => `(local $s${i} v128) (local $d${i} v128)`).join(' ')}
    (block $done
      (loop $run
        (br_if $done (i32.ge_u (local.get $v) (local.get $nvec)))
        (local.set $end (select (local.get $nvec) (i32.add (local.get $v) (i32.const ${DISTANCE_RUN}))
          (i32.lt_u (local.get $nvec) (i32.add (local.get $v) (i32.const ${DISTANCE_RUN})))))
        ${k.map((i) => `(local.set $s${i} (v128.const i32x4 0 0 0 0))`).join(' ')}
        (loop $next
          (local.set $off (i32.shl (local.get $v) (i32.const 4)))
          (local.set $x (v128.load (i32.add (local.get $a) (local.get $off))))
          ${k.map((i) => `(local.set $t (f32x4.sub (local.get $x) (v128.load (i32.add (local.get $b${i}) (local.get $off)))))
          (local.set $s${i} (f32x4.add (local.get $s${i}) (f32x4.mul (local.get $t) (local.get $t))))`).join('\n          ')}
          (local.set $v (i32.add (local.get $v) (i32.const 1)))
          (br_if $next (i32.lt_u (local.get $v) (local.get $end))))
        ${k.map((i) => `(local.set $d${i} (f64x2.add (local.get $d${i}) (f64x2.add (f64x2.promote_low_f32x4 (local.get $s${i}))
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $s${i}) (local.get $s${i}))))))`).join('\n        ')}
        (br $run)))
    ${k.map((i) => `(f64.store offset=${8 * i} (local.get $out) (f64.add (f64x2.extract_lane 0 (local.get $d${i})) (f64x2.extract_lane 1 (local.get $d${i}))))`).join('\n    ')}
  )`;
}

/**
 * Per vector of 4 coordinates: the n inputs sorted ascending into col (n slots of 16 bytes), then out[v] =
 * float32(Σ_{lo ≤ k < hi} col[k] / (hi − lo)) with the sum in float64, in ascending order. The sort inserts each input
 * in turn with pmin/pmax (`b < a ? b : a`), which place values exactly as a scalar insertion sort comparing with `>`
 * does — NaN and ±0 included — so the sums are bit-identical to the scalar reference.
 */
function windowMean(): string {
  return `
  (func (export "window_mean") (param $xs i32) (param $stride i32) (param $n i32) (param $nvec i32)
    (param $lo i32) (param $hi i32) (param $col i32) (param $out i32)
    (local $v i32) (local $i i32) (local $k i32) (local $off i32) (local $x v128) (local $c v128) (local $p i32)
    (local $sl v128) (local $sh v128) (local $count v128)
    (local.set $count (f64x2.splat (f64.convert_i32_u (i32.sub (local.get $hi) (local.get $lo)))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $v) (local.get $nvec)))
        (local.set $off (i32.shl (local.get $v) (i32.const 4)))
        (local.set $i (i32.const 0))
        (loop $insert
          (local.set $x (v128.load (i32.add (i32.add (local.get $xs) (local.get $off)) (i32.mul (local.get $i) (local.get $stride)))))
          ;; bubble x down from slot i: each slot keeps the larger, the smaller moves on
          (local.set $k (local.get $i))
          (block $placed
            (loop $down
              (br_if $placed (i32.eqz (local.get $k)))
              (local.set $p (i32.add (local.get $col) (i32.shl (local.get $k) (i32.const 4))))
              (local.set $c (v128.load offset=0 (i32.sub (local.get $p) (i32.const 16))))
              (v128.store (local.get $p) (f32x4.pmax (local.get $x) (local.get $c)))
              (local.set $x (f32x4.pmin (local.get $c) (local.get $x)))
              (local.set $k (i32.sub (local.get $k) (i32.const 1)))
              (br $down)))
          (v128.store (local.get $col) (local.get $x))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $insert (i32.lt_u (local.get $i) (local.get $n))))
        (local.set $sl (v128.const i32x4 0 0 0 0))
        (local.set $sh (v128.const i32x4 0 0 0 0))
        (local.set $k (local.get $lo))
        (loop $sum
          (local.set $c (v128.load (i32.add (local.get $col) (i32.shl (local.get $k) (i32.const 4)))))
          (local.set $sl (f64x2.add (local.get $sl) (f64x2.promote_low_f32x4 (local.get $c))))
          (local.set $sh (f64x2.add (local.get $sh) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $c) (local.get $c)))))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $sum (i32.lt_u (local.get $k) (local.get $hi))))
        (v128.store (i32.add (local.get $out) (local.get $off))
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (f64x2.div (local.get $sl) (local.get $count)))
            (f32x4.demote_f64x2_zero (f64x2.div (local.get $sh) (local.get $count)))))
        (local.set $v (i32.add (local.get $v) (i32.const 1)))
        (br $next)))
  )`;
}

/**
 * Weiszfeld's passes for the geometric median, in float64 (docs/kernels.md): the iterate z and the sums are float64
 * vectors (two per 16 bytes), the inputs float32 rows promoted on load.
 *   dist_from4: out[k] = Σ_v ‖z[v] − a_k[v]‖² for four inputs (each input's sum by the same operations in any slot).
 *   axpy64_4:   acc[v] = (((acc + c0·x0) + c1·x1) + c2·x2) + c3·x3, per coordinate, as the scalar loop writes it.
 *   axpy64_1:   acc[v] = acc + c·x.
 *   div64:      acc[v] = acc / s.
 *   step_norm:  out[0] = Σ (next − z)², out[1] = Σ next².
 * nvec counts vectors of 4 coordinates: 16 bytes of float32, 32 of float64.
 */
function weiszfeld(): string {
  const k = range(4);
  return `
  (func (export "dist_from4") (param $z i32) ${k.map((i) => `(param $a${i} i32)`).join(' ')} (param $nvec i32) (param $out i32)
    (local $v i32) (local $zp i32) (local $off i32) (local $z0 v128) (local $z1 v128) (local $x v128) (local $t v128)
    ${k.map((i) => `(local $s${i} v128)`).join(' ')}
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $v) (local.get $nvec)))
        (local.set $off (i32.shl (local.get $v) (i32.const 4)))
        (local.set $zp (i32.add (local.get $z) (i32.shl (local.get $v) (i32.const 5))))
        (local.set $z0 (v128.load (local.get $zp)))
        (local.set $z1 (v128.load offset=16 (local.get $zp)))
        ${k.map((i) => `(local.set $x (v128.load (i32.add (local.get $a${i}) (local.get $off))))
        (local.set $t (f64x2.sub (local.get $z0) (f64x2.promote_low_f32x4 (local.get $x))))
        (local.set $s${i} (f64x2.add (local.get $s${i}) (f64x2.mul (local.get $t) (local.get $t))))
        (local.set $t (f64x2.sub (local.get $z1) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x)))))
        (local.set $s${i} (f64x2.add (local.get $s${i}) (f64x2.mul (local.get $t) (local.get $t))))`).join('\n        ')}
        (local.set $v (i32.add (local.get $v) (i32.const 1)))
        (br $next)))
    ${k.map((i) => `(f64.store offset=${8 * i} (local.get $out) (f64.add (f64x2.extract_lane 0 (local.get $s${i})) (f64x2.extract_lane 1 (local.get $s${i}))))`).join('\n    ')}
  )

  (func (export "axpy64_4") (param $acc i32) (param $nvec i32) ${k.map((i) => `(param $x${i} i32)`).join(' ')} ${k.map((i) => `(param $c${i} f64)`).join(' ')}
    (local $v i32) (local $a i32) (local $off i32) (local $lo v128) (local $hi v128) (local $x v128)
    ${k.map((i) => `(local $k${i} v128)`).join(' ')}
    ${k.map((i) => `(local.set $k${i} (f64x2.splat (local.get $c${i})))`).join(' ')}
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $v) (local.get $nvec)))
        (local.set $off (i32.shl (local.get $v) (i32.const 4)))
        (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $v) (i32.const 5))))
        (local.set $lo (v128.load (local.get $a)))
        (local.set $hi (v128.load offset=16 (local.get $a)))
        ${k.map((i) => `(local.set $x (v128.load (i32.add (local.get $x${i}) (local.get $off))))
        (local.set $lo (f64x2.add (local.get $lo) (f64x2.mul (local.get $k${i}) (f64x2.promote_low_f32x4 (local.get $x)))))
        (local.set $hi (f64x2.add (local.get $hi) (f64x2.mul (local.get $k${i}) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))))`).join('\n        ')}
        (v128.store (local.get $a) (local.get $lo))
        (v128.store offset=16 (local.get $a) (local.get $hi))
        (local.set $v (i32.add (local.get $v) (i32.const 1)))
        (br $next)))
  )

  (func (export "axpy64_1") (param $acc i32) (param $nvec i32) (param $x0 i32) (param $c0 f64)
    (local $v i32) (local $a i32) (local $x v128) (local $k v128)
    (local.set $k (f64x2.splat (local.get $c0)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $v) (local.get $nvec)))
        (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $v) (i32.const 5))))
        (local.set $x (v128.load (i32.add (local.get $x0) (i32.shl (local.get $v) (i32.const 4)))))
        (v128.store (local.get $a) (f64x2.add (v128.load (local.get $a)) (f64x2.mul (local.get $k) (f64x2.promote_low_f32x4 (local.get $x)))))
        (v128.store offset=16 (local.get $a) (f64x2.add (v128.load offset=16 (local.get $a))
          (f64x2.mul (local.get $k) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))))
        (local.set $v (i32.add (local.get $v) (i32.const 1)))
        (br $next)))
  )

  (func (export "div64") (param $acc i32) (param $nvec i32) (param $s f64)
    (local $v i32) (local $a i32) (local $k v128)
    (local.set $k (f64x2.splat (local.get $s)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $v) (local.get $nvec)))
        (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $v) (i32.const 5))))
        (v128.store (local.get $a) (f64x2.div (v128.load (local.get $a)) (local.get $k)))
        (v128.store offset=16 (local.get $a) (f64x2.div (v128.load offset=16 (local.get $a)) (local.get $k)))
        (local.set $v (i32.add (local.get $v) (i32.const 1)))
        (br $next)))
  )

  (func (export "step_norm") (param $next i32) (param $z i32) (param $nvec i32) (param $out i32)
    (local $v i32) (local $p i32) (local $q i32) (local $n v128) (local $t v128) (local $step v128) (local $norm v128)
    (block $done
      (loop $loop
        (br_if $done (i32.ge_u (local.get $v) (local.get $nvec)))
        (local.set $p (i32.add (local.get $next) (i32.shl (local.get $v) (i32.const 5))))
        (local.set $q (i32.add (local.get $z) (i32.shl (local.get $v) (i32.const 5))))
        ${[0, 16].map((o) => `(local.set $n (v128.load offset=${o} (local.get $p)))
        (local.set $t (f64x2.sub (local.get $n) (v128.load offset=${o} (local.get $q))))
        (local.set $step (f64x2.add (local.get $step) (f64x2.mul (local.get $t) (local.get $t))))
        (local.set $norm (f64x2.add (local.get $norm) (f64x2.mul (local.get $n) (local.get $n))))`).join('\n        ')}
        (local.set $v (i32.add (local.get $v) (i32.const 1)))
        (br $loop)))
    (f64.store (local.get $out) (f64.add (f64x2.extract_lane 0 (local.get $step)) (f64x2.extract_lane 1 (local.get $step))))
    (f64.store offset=8 (local.get $out) (f64.add (f64x2.extract_lane 0 (local.get $norm)) (f64x2.extract_lane 1 (local.get $norm))))
  )`;
}

/**
 * Centered clipping's sweep, in float64 (docs/kernels.md):
 *   clip4: acc[v] = (((acc + c0·(x0 − z)) + c1·(x1 − z)) + c2·(x2 − z)) + c3·(x3 − z), per coordinate, as the
 *          scalar loop adds them; clip1: acc[v] = acc + c·(x − z); add64: z[v] = z + acc.
 */
function clipping(): string {
  const k = range(4);
  const lanes = (x: string): string[] => [`(f64x2.promote_low_f32x4 ${x})`, `(f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 ${x} ${x}))`];
  const term = (i: number | string): string => {
    const [lo, hi] = lanes('(local.get $x)');
    return `(local.set $x (v128.load (i32.add (local.get $x${i}) (local.get $off))))
        (local.set $lo (f64x2.add (local.get $lo) (f64x2.mul (local.get $k${i}) (f64x2.sub ${lo} (local.get $z0)))))
        (local.set $hi (f64x2.add (local.get $hi) (f64x2.mul (local.get $k${i}) (f64x2.sub ${hi} (local.get $z1)))))`;
  };
  const body = (terms: string): string => `
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $v) (local.get $nvec)))
        (local.set $off (i32.shl (local.get $v) (i32.const 4)))
        (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $v) (i32.const 5))))
        (local.set $zp (i32.add (local.get $z) (i32.shl (local.get $v) (i32.const 5))))
        (local.set $z0 (v128.load (local.get $zp)))
        (local.set $z1 (v128.load offset=16 (local.get $zp)))
        (local.set $lo (v128.load (local.get $a)))
        (local.set $hi (v128.load offset=16 (local.get $a)))
        ${terms}
        (v128.store (local.get $a) (local.get $lo))
        (v128.store offset=16 (local.get $a) (local.get $hi))
        (local.set $v (i32.add (local.get $v) (i32.const 1)))
        (br $next)))`;
  const locals = '(local $v i32) (local $a i32) (local $zp i32) (local $off i32) (local $lo v128) (local $hi v128) (local $x v128) (local $z0 v128) (local $z1 v128)';
  return `
  (func (export "clip4") (param $acc i32) (param $z i32) (param $nvec i32) ${k.map((i) => `(param $x${i} i32)`).join(' ')} ${k.map((i) => `(param $c${i} f64)`).join(' ')}
    ${locals} ${k.map((i) => `(local $k${i} v128)`).join(' ')}
    ${k.map((i) => `(local.set $k${i} (f64x2.splat (local.get $c${i})))`).join(' ')}
    ${body(k.map((i) => term(i)).join('\n        '))}
  )

  (func (export "clip1") (param $acc i32) (param $z i32) (param $nvec i32) (param $x0 i32) (param $c0 f64)
    ${locals} (local $k0 v128)
    (local.set $k0 (f64x2.splat (local.get $c0)))
    ${body(term(0))}
  )

  (func (export "add64") (param $z i32) (param $acc i32) (param $nvec i32)
    (local $v i32) (local $p i32) (local $q i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $v) (local.get $nvec)))
        (local.set $p (i32.add (local.get $z) (i32.shl (local.get $v) (i32.const 5))))
        (local.set $q (i32.add (local.get $acc) (i32.shl (local.get $v) (i32.const 5))))
        (v128.store (local.get $p) (f64x2.add (v128.load (local.get $p)) (v128.load (local.get $q))))
        (v128.store offset=16 (local.get $p) (f64x2.add (v128.load offset=16 (local.get $p)) (v128.load offset=16 (local.get $q))))
        (local.set $v (i32.add (local.get $v) (i32.const 1)))
        (br $next)))
  )`;
}

/**
 * The index of the first vector (of 4 float32) among nvec at xs with a NaN or ±∞ lane (exponent bits all ones), or
 * −1. Eight vectors are tested per branch.
 */
function nonFinite(): string {
  const k = range(8);
  return `
  (func (export "non_finite") (param $xs i32) (param $nvec i32) (result i32)
    (local $v i32) (local $p i32) (local $bad v128) (local $exp v128)
    (local.set $exp (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))
    (block $tail
      (loop $eight
        (br_if $tail (i32.gt_u (i32.add (local.get $v) (i32.const 8)) (local.get $nvec)))
        (local.set $p (i32.add (local.get $xs) (i32.shl (local.get $v) (i32.const 4))))
        (local.set $bad (v128.const i32x4 0 0 0 0))
        ${k.map((i) => `(local.set $bad (v128.or (local.get $bad) (i32x4.eq (v128.and (v128.load offset=${16 * i} (local.get $p)) (local.get $exp)) (local.get $exp))))`).join('\n        ')}
        (br_if $tail (v128.any_true (local.get $bad)))
        (local.set $v (i32.add (local.get $v) (i32.const 8)))
        (br $eight)))
    ;; the last vectors, or the eight that hold a bad one: one at a time
    (block $none
      (loop $one
        (br_if $none (i32.ge_u (local.get $v) (local.get $nvec)))
        (local.set $p (i32.add (local.get $xs) (i32.shl (local.get $v) (i32.const 4))))
        (if (v128.any_true (i32x4.eq (v128.and (v128.load (local.get $p)) (local.get $exp)) (local.get $exp)))
          (then (return (local.get $v))))
        (local.set $v (i32.add (local.get $v) (i32.const 1)))
        (br $one)))
    (i32.const -1)
  )`;
}

/** The whole module: one growable memory, owned by the module, and the kernels above. */
export function kernelsWat(): string {
  return `(module
  (memory (export "memory") 1)
${axpy8()}
${demote()}
${dist4()}
${windowMean()}
${nonFinite()}
${weiszfeld()}
${clipping()}
)
`;
}
