;; tfjs-moe's float32 matrix products for tfjs-backend-wasm, in WebAssembly SIMD (128-bit).
;;
;; The module imports tfjs-backend-wasm's own memory, so every pointer below is a byte offset of a
;; tensor's data on the tfjs heap: products read their operands where they are and write into an
;; output the backend allocated, with no copies and no packing. (tfjs-backend-wasm's XNNPACK path
;; packs its right operand on every call whose operand is a new tensor, about 3 ns per element on
;; the 2-core machine: as much as the product itself for an expert's 64 rows against its [192, 768]
;; weights; see bench/RESULTS-moe.md.)
;;
;; Three kernels, one per operand layout; all pointers and strides in bytes, every size >= 1:
;;   gemm_nn  C[M, N] = A B        A element (i, k) at a + i*ars + k*acs (any strides), B [K, N] rows
;;   gemm_tn  C[M, N] = A^T B      A stored [K, M] (rows of lda bytes), B [K, N]
;;   gemm_nt  C[M, N] = A B^T      A [M, K], B stored [N, K]
;; C is row-major with rows of ldc bytes.
;;
;; Summation order, the same for every output element whatever its position in the tiles (so a
;; row's result does not depend on the other rows of the call, nor on M or N):
;;   gemm_nn, gemm_tn: c = ((a0 b0 + a1 b1) + a2 b2) + ... in k order (multiply, then add);
;;   gemm_nt: four lane sums over k = 4q + l, combined as (s0 + s1) + (s2 + s3), then the k mod 4
;;   tail added in k order.
;;
;; Source of scripts/assemble-gemm.mjs, which writes src/backend/gemm-module.ts (the assembled
;; bytes); the test gemm-module.test.ts checks that the two agree.
(module
  (import "env" "memory" (memory 1))
  ;; C = A B: 4 x 8 tiles (8 accumulators: A splatted from memory, two vectors of a B row), then
  ;; the rows past a multiple of 4 as 1 x 8 tiles; then, when at least four columns remain past a
  ;; multiple of 8, 4 x 4 and 1 x 4 tiles for four of them; then the last columns one by one.
  (func $gemm_nn (export "gemm_nn")
    (param $m i32) (param $n i32) (param $k i32)
    (param $a i32) (param $ars i32) (param $acs i32)
    (param $b i32) (param $ldb i32) (param $c i32) (param $ldc i32)
    (local $i i32) (local $j i32) (local $kk i32) (local $m4 i32) (local $n8 i32)
    (local $pa0 i32) (local $pa1 i32) (local $pa2 i32) (local $pa3 i32) (local $pb i32) (local $pc i32)
    (local $vb0 v128) (local $vb1 v128) (local $va v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (local $s f32)
    (local.set $m4 (i32.and (local.get $m) (i32.const -4)))
    (local.set $n8 (i32.and (local.get $n) (i32.const -8)))
    (local.set $j (i32.const 0))
    (block $jdone
      (loop $jl
        (br_if $jdone (i32.ge_u (local.get $j) (local.get $n8)))
        ;; 4 x 8 tiles
        (local.set $i (i32.const 0))
        (block $idone
          (loop $il
            (br_if $idone (i32.ge_u (local.get $i) (local.get $m4)))
            (local.set $pa0 (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $ars))))
            (local.set $pa1 (i32.add (local.get $pa0) (local.get $ars)))
            (local.set $pa2 (i32.add (local.get $pa1) (local.get $ars)))
            (local.set $pa3 (i32.add (local.get $pa2) (local.get $ars)))
            (local.set $pb (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2))))
            (local.set $c00 (v128.const i32x4 0 0 0 0)) (local.set $c01 (v128.const i32x4 0 0 0 0))
            (local.set $c10 (v128.const i32x4 0 0 0 0)) (local.set $c11 (v128.const i32x4 0 0 0 0))
            (local.set $c20 (v128.const i32x4 0 0 0 0)) (local.set $c21 (v128.const i32x4 0 0 0 0))
            (local.set $c30 (v128.const i32x4 0 0 0 0)) (local.set $c31 (v128.const i32x4 0 0 0 0))
            (local.set $kk (local.get $k))
            (loop $kl
              (local.set $vb0 (v128.load (local.get $pb)))
              (local.set $vb1 (v128.load offset=16 (local.get $pb)))
              (local.set $va (v128.load32_splat (local.get $pa0)))
              (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $va) (local.get $vb0))))
              (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $va) (local.get $vb1))))
              (local.set $va (v128.load32_splat (local.get $pa1)))
              (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $va) (local.get $vb0))))
              (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $va) (local.get $vb1))))
              (local.set $va (v128.load32_splat (local.get $pa2)))
              (local.set $c20 (f32x4.add (local.get $c20) (f32x4.mul (local.get $va) (local.get $vb0))))
              (local.set $c21 (f32x4.add (local.get $c21) (f32x4.mul (local.get $va) (local.get $vb1))))
              (local.set $va (v128.load32_splat (local.get $pa3)))
              (local.set $c30 (f32x4.add (local.get $c30) (f32x4.mul (local.get $va) (local.get $vb0))))
              (local.set $c31 (f32x4.add (local.get $c31) (f32x4.mul (local.get $va) (local.get $vb1))))
              (local.set $pa0 (i32.add (local.get $pa0) (local.get $acs)))
              (local.set $pa1 (i32.add (local.get $pa1) (local.get $acs)))
              (local.set $pa2 (i32.add (local.get $pa2) (local.get $acs)))
              (local.set $pa3 (i32.add (local.get $pa3) (local.get $acs)))
              (local.set $pb (i32.add (local.get $pb) (local.get $ldb)))
              (br_if $kl (local.tee $kk (i32.sub (local.get $kk) (i32.const 1)))))
            (local.set $pc (i32.add (i32.add (local.get $c) (i32.mul (local.get $i) (local.get $ldc))) (i32.shl (local.get $j) (i32.const 2))))
            (v128.store (local.get $pc) (local.get $c00)) (v128.store offset=16 (local.get $pc) (local.get $c01))
            (local.set $pc (i32.add (local.get $pc) (local.get $ldc)))
            (v128.store (local.get $pc) (local.get $c10)) (v128.store offset=16 (local.get $pc) (local.get $c11))
            (local.set $pc (i32.add (local.get $pc) (local.get $ldc)))
            (v128.store (local.get $pc) (local.get $c20)) (v128.store offset=16 (local.get $pc) (local.get $c21))
            (local.set $pc (i32.add (local.get $pc) (local.get $ldc)))
            (v128.store (local.get $pc) (local.get $c30)) (v128.store offset=16 (local.get $pc) (local.get $c31))
            (local.set $i (i32.add (local.get $i) (i32.const 4)))
            (br $il)))
        ;; remaining rows: 1 x 8
        (block $rdone
          (loop $rl
            (br_if $rdone (i32.ge_u (local.get $i) (local.get $m)))
            (local.set $pa0 (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $ars))))
            (local.set $pb (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2))))
            (local.set $c00 (v128.const i32x4 0 0 0 0)) (local.set $c01 (v128.const i32x4 0 0 0 0))
            (local.set $kk (local.get $k))
            (loop $kl1
              (local.set $va (v128.load32_splat (local.get $pa0)))
              (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $va) (v128.load (local.get $pb)))))
              (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $va) (v128.load offset=16 (local.get $pb)))))
              (local.set $pa0 (i32.add (local.get $pa0) (local.get $acs)))
              (local.set $pb (i32.add (local.get $pb) (local.get $ldb)))
              (br_if $kl1 (local.tee $kk (i32.sub (local.get $kk) (i32.const 1)))))
            (local.set $pc (i32.add (i32.add (local.get $c) (i32.mul (local.get $i) (local.get $ldc))) (i32.shl (local.get $j) (i32.const 2))))
            (v128.store (local.get $pc) (local.get $c00)) (v128.store offset=16 (local.get $pc) (local.get $c01))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $rl)))
        (local.set $j (i32.add (local.get $j) (i32.const 8)))
        (br $jl)))
    ;; four more columns when at least four remain: 4 x 4 tiles, then the rows past them as 1 x 4
    (if (i32.ge_u (i32.sub (local.get $n) (local.get $j)) (i32.const 4))
      (then
        (local.set $i (i32.const 0))
        (block $i4done
          (loop $i4l
            (br_if $i4done (i32.ge_u (local.get $i) (local.get $m4)))
            (local.set $pa0 (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $ars))))
            (local.set $pa1 (i32.add (local.get $pa0) (local.get $ars)))
            (local.set $pa2 (i32.add (local.get $pa1) (local.get $ars)))
            (local.set $pa3 (i32.add (local.get $pa2) (local.get $ars)))
            (local.set $pb (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2))))
            (local.set $c00 (v128.const i32x4 0 0 0 0)) (local.set $c10 (v128.const i32x4 0 0 0 0))
            (local.set $c20 (v128.const i32x4 0 0 0 0)) (local.set $c30 (v128.const i32x4 0 0 0 0))
            (local.set $kk (local.get $k))
            (loop $kl4
              (local.set $vb0 (v128.load (local.get $pb)))
              (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (v128.load32_splat (local.get $pa0)) (local.get $vb0))))
              (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (v128.load32_splat (local.get $pa1)) (local.get $vb0))))
              (local.set $c20 (f32x4.add (local.get $c20) (f32x4.mul (v128.load32_splat (local.get $pa2)) (local.get $vb0))))
              (local.set $c30 (f32x4.add (local.get $c30) (f32x4.mul (v128.load32_splat (local.get $pa3)) (local.get $vb0))))
              (local.set $pa0 (i32.add (local.get $pa0) (local.get $acs)))
              (local.set $pa1 (i32.add (local.get $pa1) (local.get $acs)))
              (local.set $pa2 (i32.add (local.get $pa2) (local.get $acs)))
              (local.set $pa3 (i32.add (local.get $pa3) (local.get $acs)))
              (local.set $pb (i32.add (local.get $pb) (local.get $ldb)))
              (br_if $kl4 (local.tee $kk (i32.sub (local.get $kk) (i32.const 1)))))
            (local.set $pc (i32.add (i32.add (local.get $c) (i32.mul (local.get $i) (local.get $ldc))) (i32.shl (local.get $j) (i32.const 2))))
            (v128.store (local.get $pc) (local.get $c00))
            (local.set $pc (i32.add (local.get $pc) (local.get $ldc)))
            (v128.store (local.get $pc) (local.get $c10))
            (local.set $pc (i32.add (local.get $pc) (local.get $ldc)))
            (v128.store (local.get $pc) (local.get $c20))
            (local.set $pc (i32.add (local.get $pc) (local.get $ldc)))
            (v128.store (local.get $pc) (local.get $c30))
            (local.set $i (i32.add (local.get $i) (i32.const 4)))
            (br $i4l)))
        (block $r4done
          (loop $r4l
            (br_if $r4done (i32.ge_u (local.get $i) (local.get $m)))
            (local.set $pa0 (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $ars))))
            (local.set $pb (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2))))
            (local.set $c00 (v128.const i32x4 0 0 0 0))
            (local.set $kk (local.get $k))
            (loop $kl5
              (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (v128.load32_splat (local.get $pa0)) (v128.load (local.get $pb)))))
              (local.set $pa0 (i32.add (local.get $pa0) (local.get $acs)))
              (local.set $pb (i32.add (local.get $pb) (local.get $ldb)))
              (br_if $kl5 (local.tee $kk (i32.sub (local.get $kk) (i32.const 1)))))
            (v128.store (i32.add (i32.add (local.get $c) (i32.mul (local.get $i) (local.get $ldc))) (i32.shl (local.get $j) (i32.const 2))) (local.get $c00))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $r4l)))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))))
    ;; remaining columns: scalar
    (block $cdone
      (loop $cl
        (br_if $cdone (i32.ge_u (local.get $j) (local.get $n)))
        (local.set $i (i32.const 0))
        (block $sdone
          (loop $sl
            (br_if $sdone (i32.ge_u (local.get $i) (local.get $m)))
            (local.set $pa0 (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $ars))))
            (local.set $pb (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2))))
            (local.set $s (f32.const 0))
            (local.set $kk (local.get $k))
            (loop $kl2
              (local.set $s (f32.add (local.get $s) (f32.mul (f32.load (local.get $pa0)) (f32.load (local.get $pb)))))
              (local.set $pa0 (i32.add (local.get $pa0) (local.get $acs)))
              (local.set $pb (i32.add (local.get $pb) (local.get $ldb)))
              (br_if $kl2 (local.tee $kk (i32.sub (local.get $kk) (i32.const 1)))))
            (f32.store (i32.add (i32.add (local.get $c) (i32.mul (local.get $i) (local.get $ldc))) (i32.shl (local.get $j) (i32.const 2))) (local.get $s))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $sl)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $cl)))
  )

  ;; C = A^T B, A stored [K, M]: as gemm_nn, with the four rows of a tile read as one vector per k
  ;; (A^T's column) and splatted lane by lane; the rows and columns past the tiles go to gemm_nn with
  ;; A's strides (4, lda), which sums in the same order.
  (func (export "gemm_tn")
    (param $m i32) (param $n i32) (param $k i32)
    (param $a i32) (param $lda i32) (param $b i32) (param $ldb i32) (param $c i32) (param $ldc i32)
    (local $i i32) (local $j i32) (local $kk i32) (local $m4 i32) (local $n8 i32)
    (local $pa i32) (local $pb i32) (local $pc i32)
    (local $vb0 v128) (local $vb1 v128) (local $va v128) (local $vs v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (local.set $m4 (i32.and (local.get $m) (i32.const -4)))
    (local.set $n8 (i32.and (local.get $n) (i32.const -8)))
    (local.set $j (i32.const 0))
    (block $jdone
      (loop $jl
        (br_if $jdone (i32.ge_u (local.get $j) (local.get $n8)))
        (local.set $i (i32.const 0))
        (block $idone
          (loop $il
            (br_if $idone (i32.ge_u (local.get $i) (local.get $m4)))
            (local.set $pa (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 2))))
            (local.set $pb (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2))))
            (local.set $c00 (v128.const i32x4 0 0 0 0)) (local.set $c01 (v128.const i32x4 0 0 0 0))
            (local.set $c10 (v128.const i32x4 0 0 0 0)) (local.set $c11 (v128.const i32x4 0 0 0 0))
            (local.set $c20 (v128.const i32x4 0 0 0 0)) (local.set $c21 (v128.const i32x4 0 0 0 0))
            (local.set $c30 (v128.const i32x4 0 0 0 0)) (local.set $c31 (v128.const i32x4 0 0 0 0))
            (local.set $kk (local.get $k))
            (loop $kl
              (local.set $vb0 (v128.load (local.get $pb)))
              (local.set $vb1 (v128.load offset=16 (local.get $pb)))
              (local.set $va (v128.load (local.get $pa)))
              (local.set $vs (i8x16.shuffle 0 1 2 3 0 1 2 3 0 1 2 3 0 1 2 3 (local.get $va) (local.get $va)))
              (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $vs) (local.get $vb0))))
              (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $vs) (local.get $vb1))))
              (local.set $vs (i8x16.shuffle 4 5 6 7 4 5 6 7 4 5 6 7 4 5 6 7 (local.get $va) (local.get $va)))
              (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $vs) (local.get $vb0))))
              (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $vs) (local.get $vb1))))
              (local.set $vs (i8x16.shuffle 8 9 10 11 8 9 10 11 8 9 10 11 8 9 10 11 (local.get $va) (local.get $va)))
              (local.set $c20 (f32x4.add (local.get $c20) (f32x4.mul (local.get $vs) (local.get $vb0))))
              (local.set $c21 (f32x4.add (local.get $c21) (f32x4.mul (local.get $vs) (local.get $vb1))))
              (local.set $vs (i8x16.shuffle 12 13 14 15 12 13 14 15 12 13 14 15 12 13 14 15 (local.get $va) (local.get $va)))
              (local.set $c30 (f32x4.add (local.get $c30) (f32x4.mul (local.get $vs) (local.get $vb0))))
              (local.set $c31 (f32x4.add (local.get $c31) (f32x4.mul (local.get $vs) (local.get $vb1))))
              (local.set $pa (i32.add (local.get $pa) (local.get $lda)))
              (local.set $pb (i32.add (local.get $pb) (local.get $ldb)))
              (br_if $kl (local.tee $kk (i32.sub (local.get $kk) (i32.const 1)))))
            (local.set $pc (i32.add (i32.add (local.get $c) (i32.mul (local.get $i) (local.get $ldc))) (i32.shl (local.get $j) (i32.const 2))))
            (v128.store (local.get $pc) (local.get $c00)) (v128.store offset=16 (local.get $pc) (local.get $c01))
            (local.set $pc (i32.add (local.get $pc) (local.get $ldc)))
            (v128.store (local.get $pc) (local.get $c10)) (v128.store offset=16 (local.get $pc) (local.get $c11))
            (local.set $pc (i32.add (local.get $pc) (local.get $ldc)))
            (v128.store (local.get $pc) (local.get $c20)) (v128.store offset=16 (local.get $pc) (local.get $c21))
            (local.set $pc (i32.add (local.get $pc) (local.get $ldc)))
            (v128.store (local.get $pc) (local.get $c30)) (v128.store offset=16 (local.get $pc) (local.get $c31))
            (local.set $i (i32.add (local.get $i) (i32.const 4)))
            (br $il)))
        (local.set $j (i32.add (local.get $j) (i32.const 8)))
        (br $jl)))
    ;; the rows past m4 and the columns past n8: the strided kernel
    (if (i32.lt_u (local.get $m4) (local.get $m))
      (then (call $gemm_nn (i32.sub (local.get $m) (local.get $m4)) (local.get $n8) (local.get $k)
        (i32.add (local.get $a) (i32.shl (local.get $m4) (i32.const 2))) (i32.const 4) (local.get $lda)
        (local.get $b) (local.get $ldb)
        (i32.add (local.get $c) (i32.mul (local.get $m4) (local.get $ldc))) (local.get $ldc))))
    (if (i32.lt_u (local.get $n8) (local.get $n))
      (then (call $gemm_nn (local.get $m) (i32.sub (local.get $n) (local.get $n8)) (local.get $k)
        (local.get $a) (i32.const 4) (local.get $lda)
        (i32.add (local.get $b) (i32.shl (local.get $n8) (i32.const 2))) (local.get $ldb)
        (i32.add (local.get $c) (i32.shl (local.get $n8) (i32.const 2))) (local.get $ldc))))
  )

  ;; sum over k of a[k] b[k] in the lane order of gemm_nt's tiles: lanes k mod 4, then
  ;; (l0 + l1) + (l2 + l3), then the k % 4 tail in order.
  (func $dot (param $pa i32) (param $pb i32) (param $k i32) (result f32)
    (local $acc v128) (local $kk i32) (local $s f32)
    (local.set $kk (i32.shr_u (local.get $k) (i32.const 2)))
    (if (local.get $kk)
      (then
        (loop $kl
          (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (v128.load (local.get $pa)) (v128.load (local.get $pb)))))
          (local.set $pa (i32.add (local.get $pa) (i32.const 16)))
          (local.set $pb (i32.add (local.get $pb) (i32.const 16)))
          (br_if $kl (local.tee $kk (i32.sub (local.get $kk) (i32.const 1)))))))
    (local.set $s (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
      (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc)))))
    (local.set $kk (i32.and (local.get $k) (i32.const 3)))
    (if (local.get $kk)
      (then
        (loop $tl
          (local.set $s (f32.add (local.get $s) (f32.mul (f32.load (local.get $pa)) (f32.load (local.get $pb)))))
          (local.set $pa (i32.add (local.get $pa) (i32.const 4)))
          (local.set $pb (i32.add (local.get $pb) (i32.const 4)))
          (br_if $tl (local.tee $kk (i32.sub (local.get $kk) (i32.const 1)))))))
    (local.get $s))
  ;; C = A B^T, both operands with K contiguous: 2 x 4 tiles of dot products (8 accumulators of four
  ;; lane sums each), reduced four at a time by a 4 x 4 transpose, then the k mod 4 tails ($tail);
  ;; the columns past a multiple of 4 and the last row when M is odd by $dot, in the same order.
  (func (export "gemm_nt")
    (param $m i32) (param $n i32) (param $k i32)
    (param $a i32) (param $lda i32) (param $b i32) (param $ldb i32) (param $c i32) (param $ldc i32)
    (local $i i32) (local $j i32) (local $o i32) (local $k4 i32) (local $m2 i32) (local $n4 i32)
    (local $pa0 i32) (local $pa1 i32) (local $pb0 i32) (local $pb1 i32) (local $pb2 i32) (local $pb3 i32) (local $pc i32)
    (local $va0 v128) (local $va1 v128) (local $vb v128)
    (local $c00 v128) (local $c01 v128) (local $c02 v128) (local $c03 v128)
    (local $c10 v128) (local $c11 v128) (local $c12 v128) (local $c13 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local.set $m2 (i32.and (local.get $m) (i32.const -2)))
    (local.set $n4 (i32.and (local.get $n) (i32.const -4)))
    (local.set $k4 (i32.shl (i32.shr_u (local.get $k) (i32.const 2)) (i32.const 4)))
    (local.set $i (i32.const 0))
    (block $idone
      (loop $il
        (br_if $idone (i32.ge_u (local.get $i) (local.get $m2)))
        (local.set $pa0 (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $lda))))
        (local.set $pa1 (i32.add (local.get $pa0) (local.get $lda)))
        (local.set $j (i32.const 0))
        (block $jdone
          (loop $jl
            (br_if $jdone (i32.ge_u (local.get $j) (local.get $n4)))
            (local.set $pb0 (i32.add (local.get $b) (i32.mul (local.get $j) (local.get $ldb))))
            (local.set $pb1 (i32.add (local.get $pb0) (local.get $ldb)))
            (local.set $pb2 (i32.add (local.get $pb1) (local.get $ldb)))
            (local.set $pb3 (i32.add (local.get $pb2) (local.get $ldb)))
            (local.set $c00 (v128.const i32x4 0 0 0 0)) (local.set $c01 (v128.const i32x4 0 0 0 0))
            (local.set $c02 (v128.const i32x4 0 0 0 0)) (local.set $c03 (v128.const i32x4 0 0 0 0))
            (local.set $c10 (v128.const i32x4 0 0 0 0)) (local.set $c11 (v128.const i32x4 0 0 0 0))
            (local.set $c12 (v128.const i32x4 0 0 0 0)) (local.set $c13 (v128.const i32x4 0 0 0 0))
            (local.set $o (i32.const 0))
            (block $kdone
              (loop $kl
                (br_if $kdone (i32.ge_u (local.get $o) (local.get $k4)))
                (local.set $va0 (v128.load (i32.add (local.get $pa0) (local.get $o))))
                (local.set $va1 (v128.load (i32.add (local.get $pa1) (local.get $o))))
                (local.set $vb (v128.load (i32.add (local.get $pb0) (local.get $o))))
                (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $va0) (local.get $vb))))
                (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $va1) (local.get $vb))))
                (local.set $vb (v128.load (i32.add (local.get $pb1) (local.get $o))))
                (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $va0) (local.get $vb))))
                (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $va1) (local.get $vb))))
                (local.set $vb (v128.load (i32.add (local.get $pb2) (local.get $o))))
                (local.set $c02 (f32x4.add (local.get $c02) (f32x4.mul (local.get $va0) (local.get $vb))))
                (local.set $c12 (f32x4.add (local.get $c12) (f32x4.mul (local.get $va1) (local.get $vb))))
                (local.set $vb (v128.load (i32.add (local.get $pb3) (local.get $o))))
                (local.set $c03 (f32x4.add (local.get $c03) (f32x4.mul (local.get $va0) (local.get $vb))))
                (local.set $c13 (f32x4.add (local.get $c13) (f32x4.mul (local.get $va1) (local.get $vb))))
                (local.set $o (i32.add (local.get $o) (i32.const 16)))
                (br $kl)))
            (local.set $pc (i32.add (i32.add (local.get $c) (i32.mul (local.get $i) (local.get $ldc))) (i32.shl (local.get $j) (i32.const 2))))
            (v128.store (local.get $pc) (block (result v128) (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $c00) (local.get $c01))) (local.set $t1 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $c00) (local.get $c01))) (local.set $t2 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $c02) (local.get $c03))) (local.set $t3 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $c02) (local.get $c03)))
(f32x4.add (f32x4.add (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t2)) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t2))) (f32x4.add (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t1) (local.get $t3)) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t1) (local.get $t3))))))
            (v128.store (i32.add (local.get $pc) (local.get $ldc)) (block (result v128) (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $c10) (local.get $c11))) (local.set $t1 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $c10) (local.get $c11))) (local.set $t2 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $c12) (local.get $c13))) (local.set $t3 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $c12) (local.get $c13)))
(f32x4.add (f32x4.add (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t2)) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t2))) (f32x4.add (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t1) (local.get $t3)) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t1) (local.get $t3))))))
            (if (i32.and (local.get $k) (i32.const 3)) (then
              (call $tail (i32.add (local.get $pc) (i32.const 0)) (local.get $pa0) (local.get $pb0) (local.get $k))
              (call $tail (i32.add (local.get $pc) (i32.const 4)) (local.get $pa0) (local.get $pb1) (local.get $k))
              (call $tail (i32.add (local.get $pc) (i32.const 8)) (local.get $pa0) (local.get $pb2) (local.get $k))
              (call $tail (i32.add (local.get $pc) (i32.const 12)) (local.get $pa0) (local.get $pb3) (local.get $k))
              (call $tail (i32.add (i32.add (local.get $pc) (local.get $ldc)) (i32.const 0)) (local.get $pa1) (local.get $pb0) (local.get $k))
              (call $tail (i32.add (i32.add (local.get $pc) (local.get $ldc)) (i32.const 4)) (local.get $pa1) (local.get $pb1) (local.get $k))
              (call $tail (i32.add (i32.add (local.get $pc) (local.get $ldc)) (i32.const 8)) (local.get $pa1) (local.get $pb2) (local.get $k))
              (call $tail (i32.add (i32.add (local.get $pc) (local.get $ldc)) (i32.const 12)) (local.get $pa1) (local.get $pb3) (local.get $k))
            ))
            (local.set $j (i32.add (local.get $j) (i32.const 4)))
            (br $jl)))
        ;; columns past n4 of these two rows
        (block $rdone
          (loop $rl
            (br_if $rdone (i32.ge_u (local.get $j) (local.get $n)))
            (local.set $pb0 (i32.add (local.get $b) (i32.mul (local.get $j) (local.get $ldb))))
            (local.set $pc (i32.add (i32.add (local.get $c) (i32.mul (local.get $i) (local.get $ldc))) (i32.shl (local.get $j) (i32.const 2))))
            (f32.store (local.get $pc) (call $dot (local.get $pa0) (local.get $pb0) (local.get $k)))
            (f32.store (i32.add (local.get $pc) (local.get $ldc)) (call $dot (local.get $pa1) (local.get $pb0) (local.get $k)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $rl)))
        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br $il)))
    ;; the last row when m is odd
    (if (i32.lt_u (local.get $m2) (local.get $m))
      (then
        (local.set $pa0 (i32.add (local.get $a) (i32.mul (local.get $m2) (local.get $lda))))
        (local.set $pc (i32.add (local.get $c) (i32.mul (local.get $m2) (local.get $ldc))))
        (local.set $j (i32.const 0))
        (block $ldone
          (loop $ll
            (br_if $ldone (i32.ge_u (local.get $j) (local.get $n)))
            (f32.store (local.get $pc) (call $dot (local.get $pa0) (i32.add (local.get $b) (i32.mul (local.get $j) (local.get $ldb))) (local.get $k)))
            (local.set $pc (i32.add (local.get $pc) (i32.const 4)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $ll)))))
  )
  ;; adds the k % 4 tail (in order) to the float at $p
  (func $tail (param $p i32) (param $pa i32) (param $pb i32) (param $k i32)
    (local $s f32) (local $o i32) (local $end i32)
    (local.set $s (f32.load (local.get $p)))
    (local.set $o (i32.shl (i32.and (local.get $k) (i32.const -4)) (i32.const 2)))
    (local.set $end (i32.shl (local.get $k) (i32.const 2)))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $s (f32.add (local.get $s) (f32.mul (f32.load (i32.add (local.get $pa) (local.get $o))) (f32.load (i32.add (local.get $pb) (local.get $o))))))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $l)))
    (f32.store (local.get $p) (local.get $s)))
)
