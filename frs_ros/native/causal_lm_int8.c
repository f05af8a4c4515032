/* Causal-LM forward pass with int8 weights for CPUs (Qwen3 and Llama families): the native kernel
 * behind frs_ros.reasoning.lm.lean.LeanDecoder.
 *
 * Why: decoding one token reads every weight once, so it is memory-bound; the torch path spends
 * a third of each token in ~600 small op dispatches and its int8 GEMV (fbgemm, M = 1) streams
 * weights at ~60 % of the machine's read bandwidth. This file runs the whole layer stack for T
 * new tokens in one call and one OpenMP parallel region:
 *
 *   weights  int8, one fp32 scale per output row (symmetric), packed in 16-row blocks (qgemm);
 *   inputs   each matrix product quantises its activation rows to int8 with one scale per
 *            block of 32 columns (|q| <= 127; why blocks: see QB) and sums the products of a
 *            block exactly on integers with the SIMD the compiler targets (AVX512-VNNI,
 *            AVX2, or plain C with FRS_PORTABLE), then in fp32 across blocks;
 *   layout   the caller fuses q|k|v and gate|up (alternating 16-row blocks of gate and up rows,
 *            see qgemm_swiglu), permutes q/k head dims to interleaved RoPE pairs
 *            and folds the softmax scale into the q-norm weight (Qwen3) or into the Wq rows
 *            (Llama: no q/k norm, qk_norm = NULL); a tied LM head is the embedding matrix;
 *   cache    K and V: (L, KV, cap, hd) IEEE fp16 (read back exactly into fp32 for the sums),
 *            token P + t written at row P + t: at SmolLM2's 30 layers x 3 KV heads x 64 dims a
 *            550-token context is 12.7 MB per decoded token instead of 25 MB (the weights are
 *            136 MB), and the reasoner's cached prefixes take half the memory.
 *   pages    the caller (lean.py) keeps the packed weights and the KV caches in 2 MB transparent
 *            huge pages (int8.hugepage_zeros): in 4 KB pages a token's ~150 MB are ~37k TLB
 *            misses and prefetch restarts; measured 9 % less time per decoded token.
 *
 * Decoding one token (T = 1) is organised around the barriers (sync_team: spin, then yield),
 * which at a small width cost as much as the small ops: 5 per layer (after q|k|v, attention, o, gate|up + SiLU, down). Every thread
 * computes the norms, activation quantisation and the attention merge itself (a few hundred
 * values: cheaper than a barrier), and the attention over the cache is split into (KV head,
 * position chunk) items so that 3 KV heads still keep 2 threads equally busy.
 *
 * No allocation of weights, no Python: the caller owns every buffer it passes. Thread-safe for
 * distinct caches; frs_forward() allocates its scratch per call. Results do not depend on the
 * number of threads (every output value is computed by one thread, in a fixed order).
 */
#define _GNU_SOURCE /* sched_yield */
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if !defined(FRS_PORTABLE) && ((defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)) || \
                                 defined(FRS_EMULATE_VNNI))
#include <immintrin.h>
#define FRS_SIMD 2 /* AVX512-VNNI (or its plain-C emulation, FRS_EMULATE_VNNI, for tests) */
#elif !defined(FRS_PORTABLE) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define FRS_SIMD 1 /* AVX2 */
#else
#define FRS_SIMD 0 /* plain C */
#endif

#define FRS_ABI_VERSION 5
/* Row-level helpers are called from the decode and the multi-token paths; kept out of line so both
 * run the same machine code (same FMA contraction and vectorisation) and a token decoded alone
 * gives the same bits as in a prefill. */
#define ROW_FN static __attribute__((noinline))

typedef struct {
    const int8_t *w;    /* packed (ceil(rows / 16), cols / 4, 16, 4), see qgemm */
    const float *scale; /* (rows,) */
    int32_t rows, cols;
} frs_mat;

typedef struct {
    frs_mat qkv, o, gate_up, down;
    const float *ln1, *ln2; /* (D,) */
    const float *qk_norm;   /* (H + KV, hd) q-norm (x softmax scale) then k-norm weights; NULL: no q/k norm */
} frs_layer;

typedef struct {
    int32_t n_layers, hidden, n_heads, n_kv, head_dim, inter, vocab, max_len;
    float eps;
    const frs_layer *layers;
    frs_mat lm_head;
    const float *final_norm; /* (D,) */
    const float *rope;       /* (max_len, hd / 2, 2): cos, sin */
} frs_model;

int frs_abi_version(void) { return FRS_ABI_VERSION; }
/* 2: AVX512-VNNI, 1: AVX2, 0: plain C */
int frs_simd_level(void) { return FRS_SIMD; }

/* ---------------------------------------------------------------------------------------- */
/* the team barrier                                                                          */
/* ---------------------------------------------------------------------------------------- */

/* A sense-reversing barrier that spins briefly, then yields the CPU. Every work-shared loop
 * below is `omp for nowait` followed by sync_team(). Why not OpenMP's implicit barrier: on a
 * 2-core host shared with other processes (a training job, the other ROS nodes), a thread
 * waiting at libgomp's barrier spins for ~300k iterations before it sleeps, taking the core its
 * descheduled sibling needs; with 150 barriers per decoded token that turned milliseconds into
 * hundreds of milliseconds per token. Yielding after a short spin hands the core over instead;
 * on an idle machine the waits are a few microseconds and never reach the yield. */
typedef struct {
    atomic_int arrived, phase;
    int n; /* threads in the team */
} team_barrier;

typedef struct {
    team_barrier *b;
    int phase; /* this thread's view of b->phase */
} team;

#define SPINS_BEFORE_YIELD 4000 /* ~40-80 us of pause instructions */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void sync_team(team *tm) {
    team_barrier *b = tm->b;
    const int next = tm->phase ^ 1;
    tm->phase = next;
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == b->n - 1) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed); /* ordered before the release below */
        atomic_store_explicit(&b->phase, next, memory_order_release);
        return;
    }
    for (int spins = 0; atomic_load_explicit(&b->phase, memory_order_acquire) != next; ++spins) {
        if (spins < SPINS_BEFORE_YIELD)
            cpu_relax();
        else
            sched_yield();
    }
}

/* ---------------------------------------------------------------------------------------- */
/* activation quantisation and the int8 matrix product                                      */
/* ---------------------------------------------------------------------------------------- */

/* Activations are quantised in blocks of QB columns, one scale per block (as llama.cpp's Q8_0):
 * a row's largest values (SmolLM2's down_proj inputs reach ~40x their RMS) then cost precision in
 * their own block only. Measured on SmolLM2-135M's projection inputs, the mean relative error of
 * the quantised activations is 1.0 % per block of 32 against 3.0 % with one scale per row
 * (q_proj 1.0 vs 3.3 %, down_proj 0.9 vs 3.0 %), and with one scale per row the first greedy
 * token of "What is the capital of France?" already differed from the fp32 model's. */
#define QB 32
#define QB4 (QB / 4)
static inline int n_qblocks(int K) { return (K + QB - 1) / QB; }

/* max |x_k| in 16 independent lanes (vectorised; a running scalar max is not); NaN if any is NaN */
#define NANMAX(a, b) ((b) > (a) || (b) != (b) ? (b) : (a))
static float absmax(const float *x, int n) {
    float m[16] = {0};
    int k = 0;
#if FRS_SIMD >= 1
    const __m256 sign = _mm256_set1_ps(-0.f);
    __m256 m0 = _mm256_setzero_ps(), m1 = m0, nan = m0; /* nan: lanes that saw a NaN (max drops them) */
    for (; k + 16 <= n; k += 16) {
        const __m256 a = _mm256_loadu_ps(x + k), b = _mm256_loadu_ps(x + k + 8);
        m0 = _mm256_max_ps(m0, _mm256_andnot_ps(sign, a));
        m1 = _mm256_max_ps(m1, _mm256_andnot_ps(sign, b));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(nan)) return NAN;
    _mm256_storeu_ps(m, m0);
    _mm256_storeu_ps(m + 8, m1);
#endif
    for (; k + 16 <= n; k += 16)
        for (int i = 0; i < 16; ++i) m[i] = NANMAX(m[i], fabsf(x[k + i]));
    float amax = 0.f;
    for (int i = 0; i < 16; ++i) amax = NANMAX(amax, m[i]);
    for (; k < n; ++k) amax = NANMAX(amax, fabsf(x[k]));
    return amax;
}

/* x (n,) fp32 -> xq (n,) int8 round(x / s_b), sx (ceil(n / QB),) the block scales s_b (0 for an
 * all-zero block; NaN for a block holding inf or NaN, so the output is NaN as a float model's) */
#if FRS_SIMD >= 1
/* max |x_k| of 32 values; NaN if any is NaN */
static inline float absmax32(const float *x) {
    const __m256 sign = _mm256_set1_ps(-0.f);
    const __m256 a = _mm256_loadu_ps(x), b = _mm256_loadu_ps(x + 8), c = _mm256_loadu_ps(x + 16), d = _mm256_loadu_ps(x + 24);
    const __m256 nan = _mm256_or_ps(_mm256_cmp_ps(a, b, _CMP_UNORD_Q), _mm256_cmp_ps(c, d, _CMP_UNORD_Q));
    if (_mm256_movemask_ps(nan)) return NAN;
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, a), _mm256_andnot_ps(sign, b)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, c), _mm256_andnot_ps(sign, d)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}
#endif

ROW_FN void quantize_row(const float *x, int8_t *xq, float *sx, int n) {
    for (int b0 = 0, bi = 0; b0 < n; b0 += QB, ++bi) {
        const int nb = n - b0 < QB ? n - b0 : QB;
#if FRS_SIMD >= 1
        const float amax = nb == QB ? absmax32(x + b0) : absmax(x + b0, nb);
#else
        const float amax = absmax(x + b0, nb);
#endif
        if (!(amax > 0.f) || !isfinite(amax)) {
            memset(xq + b0, 0, (size_t)nb);
            sx[bi] = amax > 0.f || amax != amax ? NAN : 0.f;
            continue;
        }
        const float inv = 127.f / amax;
        int k = 0;
#if FRS_SIMD >= 1
        if (nb == QB) { /* the scalar loop's arithmetic on 32 values (same products and sums: same bytes) */
            const __m256 vinv = _mm256_set1_ps(inv), half = _mm256_set1_ps(0.5f), mhalf = _mm256_set1_ps(-0.5f);
            const __m256 zero = _mm256_setzero_ps();
            __m256i q[4];
            for (int i = 0; i < 4; ++i) {
                const __m256 r = _mm256_mul_ps(_mm256_loadu_ps(x + b0 + 8 * i), vinv);
                const __m256 h = _mm256_blendv_ps(mhalf, half, _mm256_cmp_ps(r, zero, _CMP_GE_OQ));
                q[i] = _mm256_cvttps_epi32(_mm256_add_ps(r, h));
            }
            const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            _mm256_storeu_si256((__m256i *)(xq + b0), _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
            k = QB;
        }
#endif
        for (; k < nb; ++k) { /* round half away from zero; |r| <= 127 by construction */
            const float r = x[b0 + k] * inv;
            xq[b0 + k] = (int8_t)(int)(r + (r >= 0.f ? 0.5f : -0.5f));
        }
        sx[bi] = amax / 127.f;
    }
}

/* The weights are packed for streaming: blocks of 16 output rows, and inside a block, for each
 * group of 4 input columns, the 16 rows' 4 bytes (64 bytes, one cache line):
 *     packed[b][k4][r][j] = W[16 b + r][4 k4 + j]      (rows padded to a multiple of 16 with 0)
 * so a matrix product reads its weights strictly sequentially, and one 64-byte line times the
 * broadcast 4 activation bytes accumulates 16 output rows at once (no horizontal sums).
 * A block of 16 rows times one token (block_gemv) or TT tokens (block_gemm) sums the int8
 * products of each QB-column activation block exactly in int32 (|sum| <= 32 * 127^2 < 2^24,
 * so exact in fp32 too), then adds it times the block's scale to an fp32 accumulator: the same
 * operations in the same order in both, so a token gives the same bits alone or in a prefill.
 * Integer products by SIMD level:
 *   AVX512-VNNI  vpdpbusd (u8 x s8 -> s32) on |x| and w negated where x < 0;
 *   AVX2         vpmaddubsw on |x| and sign(x) w (pairs fit s16: 2 * 127 * 127 < 2^15), then
 *                vpmaddwd with ones (s32), 8 rows per 32-byte half line;
 *   plain C      the same sums.
 * Requires cols % 4 == 0. The per-row weight scale is applied when the block is stored. */
#define RB 16 /* rows per block */
#if FRS_SIMD == 2
#define TT 8 /* tokens per tile in a multi-token product (prefill): 8 int + 8 fp32 accumulators of 32 zmm */
#elif FRS_SIMD == 1
#define TT 2 /* 2 x 2 int + 2 x 2 fp32 accumulators, 2 weight halves and temporaries in 16 ymm */
#else
#define TT 4
#endif

#if FRS_SIMD == 2
/* 16 rows as 16 lanes. FRS_EMULATE_VNNI (tests) builds this path with plain-C lanes, so its logic
 * runs on CPUs without AVX-512; the real build maps each helper to one or two intrinsics. */
#ifdef FRS_EMULATE_VNNI
typedef struct { int32_t v[16]; } vi16;
typedef struct { float v[16]; } vf16;
static inline vi16 vi_zero(void) { vi16 a; memset(&a, 0, sizeof a); return a; }
static inline vi16 vi_dot4(vi16 acc, const int8_t *x4, const int8_t *w64) {
    for (int r = 0; r < 16; ++r)
        for (int j = 0; j < 4; ++j) {
            const int x = x4[j], w = w64[4 * r + j], ax = x < 0 ? -x : x, sw = x < 0 ? -w : w; /* |x|, sign(x) w */
            acc.v[r] += ax * sw;
        }
    return acc;
}
static inline vi16 vi_add(vi16 a, vi16 b) { for (int r = 0; r < 16; ++r) a.v[r] += b.v[r]; return a; }
static inline vf16 vf_zero(void) { vf16 a; memset(&a, 0, sizeof a); return a; }
static inline vf16 vf_add_scaled(vf16 f, vi16 a, float s) { for (int r = 0; r < 16; ++r) f.v[r] = fmaf((float)a.v[r], s, f.v[r]); return f; }
static inline void vf_store(float *out, vf16 f) { memcpy(out, f.v, sizeof f.v); }
#else
typedef __m512i vi16;
typedef __m512 vf16;
static inline vi16 vi_zero(void) { return _mm512_setzero_si512(); }
static inline vi16 vi_dot4(vi16 acc, const int8_t *x4, const int8_t *w64) {
    int32_t v;
    memcpy(&v, x4, 4);
    const __m512i x = _mm512_set1_epi32(v), w = _mm512_loadu_si512((const void *)w64);
    const __m512i sw = _mm512_mask_sub_epi8(w, _mm512_movepi8_mask(x), _mm512_setzero_si512(), w); /* -w where x < 0 */
    return _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(x), sw);
}
static inline vi16 vi_add(vi16 a, vi16 b) { return _mm512_add_epi32(a, b); }
static inline vf16 vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf16 vf_add_scaled(vf16 f, vi16 a, float s) { return _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_set1_ps(s), f); }
static inline void vf_store(float *out, vf16 f) { _mm512_storeu_ps(out, f); }
#endif
#elif FRS_SIMD == 1
static inline __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}
/* 8 rows x 4 columns: per row sum_j x_j w_j as s32 (ax = |x|, x broadcast; exact, see above) */
static inline __m256i dot8x4(__m256i ax, __m256i x, __m256i w, __m256i ones) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w, x)), ones);
}
#endif

/* one block of 16 rows times one token: out[r] = sum_b sx[b] sum_{k in b} x[k] W[r][k] */
static inline void block_gemv(const int8_t *wb, const int8_t *xq, const float *sx, int K4, float *out) {
#if FRS_SIMD == 2
    vf16 f = vf_zero();
    for (int k0 = 0, bi = 0; k0 < K4; k0 += QB4, ++bi) {
        const int k1 = k0 + QB4 < K4 ? k0 + QB4 : K4;
        vi16 a0 = vi_zero(), a1 = a0;
        int k = k0;
        for (; k + 2 <= k1; k += 2) { /* two independent chains hide the vpdpbusd latency */
            a0 = vi_dot4(a0, xq + 4 * k, wb + 64 * k);
            a1 = vi_dot4(a1, xq + 4 * k + 4, wb + 64 * k + 64);
        }
        if (k < k1) a0 = vi_dot4(a0, xq + 4 * k, wb + 64 * k);
        f = vf_add_scaled(f, vi_add(a0, a1), sx[bi]);
    }
    vf_store(out, f);
#elif FRS_SIMD == 1
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 f0 = _mm256_setzero_ps(), f1 = f0;
    for (int k0 = 0, bi = 0; k0 < K4; k0 += QB4, ++bi) {
        const int k1 = k0 + QB4 < K4 ? k0 + QB4 : K4;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, b0 = a0, b1 = a0;
        int k = k0;
        for (; k + 2 <= k1; k += 2) { /* two 4-column groups per pass: independent accumulators */
            const __m256i x0 = bcast4(xq + 4 * k), x1 = bcast4(xq + 4 * k + 4);
            const __m256i ax0 = _mm256_abs_epi8(x0), ax1 = _mm256_abs_epi8(x1);
            const int8_t *w = wb + 64 * k;
            a0 = _mm256_add_epi32(a0, dot8x4(ax0, x0, _mm256_loadu_si256((const __m256i *)w), ones));
            a1 = _mm256_add_epi32(a1, dot8x4(ax0, x0, _mm256_loadu_si256((const __m256i *)(w + 32)), ones));
            b0 = _mm256_add_epi32(b0, dot8x4(ax1, x1, _mm256_loadu_si256((const __m256i *)(w + 64)), ones));
            b1 = _mm256_add_epi32(b1, dot8x4(ax1, x1, _mm256_loadu_si256((const __m256i *)(w + 96)), ones));
        }
        if (k < k1) {
            const __m256i x0 = bcast4(xq + 4 * k), ax0 = _mm256_abs_epi8(x0);
            const int8_t *w = wb + 64 * k;
            a0 = _mm256_add_epi32(a0, dot8x4(ax0, x0, _mm256_loadu_si256((const __m256i *)w), ones));
            a1 = _mm256_add_epi32(a1, dot8x4(ax0, x0, _mm256_loadu_si256((const __m256i *)(w + 32)), ones));
        }
        const __m256 s = _mm256_set1_ps(sx[bi]);
        f0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(a0, b0)), s, f0);
        f1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(a1, b1)), s, f1);
    }
    _mm256_storeu_ps(out, f0);
    _mm256_storeu_ps(out + 8, f1);
#else
    for (int r = 0; r < RB; ++r) out[r] = 0.f;
    for (int k0 = 0, bi = 0; k0 < K4; k0 += QB4, ++bi) {
        const int k1 = k0 + QB4 < K4 ? k0 + QB4 : K4;
        int32_t acc[RB] = {0};
        for (int k = k0; k < k1; ++k)
            for (int r = 0; r < RB; ++r)
                for (int j = 0; j < 4; ++j) acc[r] += (int32_t)xq[4 * k + j] * (int32_t)wb[64 * k + 4 * r + j];
        for (int r = 0; r < RB; ++r) out[r] = fmaf((float)acc[r], sx[bi], out[r]);
    }
#endif
}

/* one block of 16 rows times TT tokens (xq rows at stride K, sx rows at stride n_qblocks(K)): out[t][r] */
static inline void block_gemm(const int8_t *wb, const int8_t *xq, const float *sx, int K, float out[TT][RB]) {
    const int K4 = K / 4, NQ = n_qblocks(K);
#if FRS_SIMD == 2
    vf16 f[TT];
    for (int t = 0; t < TT; ++t) f[t] = vf_zero();
    for (int k0 = 0, bi = 0; k0 < K4; k0 += QB4, ++bi) {
        const int k1 = k0 + QB4 < K4 ? k0 + QB4 : K4;
        vi16 a[TT];
        for (int t = 0; t < TT; ++t) a[t] = vi_zero();
        for (int k = k0; k < k1; ++k) {
#pragma GCC unroll 8
            for (int t = 0; t < TT; ++t) a[t] = vi_dot4(a[t], xq + (size_t)t * K + 4 * k, wb + 64 * k);
        }
        for (int t = 0; t < TT; ++t) f[t] = vf_add_scaled(f[t], a[t], sx[(size_t)t * NQ + bi]);
    }
    for (int t = 0; t < TT; ++t) vf_store(out[t], f[t]);
#elif FRS_SIMD == 1
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 f[TT][2];
    for (int t = 0; t < TT; ++t) f[t][0] = f[t][1] = _mm256_setzero_ps();
    for (int k0 = 0, bi = 0; k0 < K4; k0 += QB4, ++bi) {
        const int k1 = k0 + QB4 < K4 ? k0 + QB4 : K4;
        __m256i a[TT][2];
        for (int t = 0; t < TT; ++t) a[t][0] = a[t][1] = _mm256_setzero_si256();
        for (int k = k0; k < k1; ++k) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(wb + 64 * k));
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(wb + 64 * k + 32));
#pragma GCC unroll 4
            for (int t = 0; t < TT; ++t) {
                const __m256i x = bcast4(xq + (size_t)t * K + 4 * k), ax = _mm256_abs_epi8(x);
                a[t][0] = _mm256_add_epi32(a[t][0], dot8x4(ax, x, w0, ones));
                a[t][1] = _mm256_add_epi32(a[t][1], dot8x4(ax, x, w1, ones));
            }
        }
        for (int t = 0; t < TT; ++t) {
            const __m256 s = _mm256_set1_ps(sx[(size_t)t * NQ + bi]);
            f[t][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[t][0]), s, f[t][0]);
            f[t][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[t][1]), s, f[t][1]);
        }
    }
    for (int t = 0; t < TT; ++t) {
        _mm256_storeu_ps(out[t], f[t][0]);
        _mm256_storeu_ps(out[t] + 8, f[t][1]);
    }
#else
    for (int t = 0; t < TT; ++t) block_gemv(wb, xq + (size_t)t * K, sx + (size_t)t * NQ, K4, out[t]);
#endif
}

/* y[r] (+)= v[r] scale[r] for the valid rows of block b */
static inline void store_rows(const frs_mat *m, int b, const float *v, float *y, int accumulate) {
    const int r0 = RB * b, nr = m->rows - r0 < RB ? m->rows - r0 : RB;
    for (int r = 0; r < nr; ++r) {
        const float o = v[r] * m->scale[r0 + r];
        y[r0 + r] = accumulate ? y[r0 + r] + o : o;
    }
}

/* y[t, r] (+)= (W xq_t)[r] for T quantised rows (xq: (T, cols), sx: (T, n_qblocks(cols))), y row
 * stride ldy. Work-shared over the 16-row blocks (every thread of the enclosing parallel region
 * calls it; ends with sync_team); a block's weights (16 x cols bytes) stay in cache while all T
 * rows use them, and each thread streams one contiguous range of blocks. */
static void qgemm(const frs_mat *m, const int8_t *xq, const float *sx, int T, float *y, int ldy, int accumulate,
                  team *tm) {
    const int K = m->cols, K4 = K / 4, NQ = n_qblocks(K), nb = (m->rows + RB - 1) / RB;
#pragma omp for schedule(static) nowait
    for (int b = 0; b < nb; ++b) {
        const int8_t *wb = m->w + (size_t)b * K4 * 64;
        int t = 0;
        for (; t + TT <= T; t += TT) {
            float v[TT][RB];
            block_gemm(wb, xq + (size_t)t * K, sx + (size_t)t * NQ, K, v);
            for (int i = 0; i < TT; ++i) store_rows(m, b, v[i], y + (size_t)(t + i) * ldy, accumulate);
        }
        for (; t < T; ++t) {
            float v[RB];
            block_gemv(wb, xq + (size_t)t * K, sx + (size_t)t * NQ, K4, v);
            store_rows(m, b, v, y + (size_t)t * ldy, accumulate);
        }
    }
    sync_team(tm);
}

ROW_FN void swiglu(const float *g, const float *u, float *a, int n);

/* act[t, i] = silu(gate_t[i]) up_t[i] for the SiLU-gated MLP, straight from the fused gate|up
 * product: m packs gate and up rows in alternating 16-row blocks (gate rows 16 j.., then up rows
 * 16 j.., padded to 2 ceil(I / 16) 16 rows), so the thread that computes a gate block also has
 * its up block and writes the activation itself: no (T, 2 I) intermediate, no extra pass. */
static void qgemm_swiglu(const frs_mat *m, const int8_t *xq, const float *sx, int T, float *act, int I, team *tm) {
    const int K = m->cols, K4 = K / 4, NQ = n_qblocks(K), npairs = m->rows / (2 * RB);
#pragma omp for schedule(static) nowait
    for (int bp = 0; bp < npairs; ++bp) {
        const int8_t *wg = m->w + (size_t)(2 * bp) * K4 * 64, *wu = wg + (size_t)K4 * 64;
        const float *sg = m->scale + (size_t)2 * RB * bp, *su = sg + RB;
        const int i0 = RB * bp, nr = I - i0 < RB ? I - i0 : RB;
        float g[RB], u[RB];
        int t = 0;
        for (; t + TT <= T; t += TT) {
            float vg[TT][RB], vu[TT][RB];
            block_gemm(wg, xq + (size_t)t * K, sx + (size_t)t * NQ, K, vg);
            block_gemm(wu, xq + (size_t)t * K, sx + (size_t)t * NQ, K, vu);
            for (int i = 0; i < TT; ++i) {
                for (int r = 0; r < RB; ++r) {
                    g[r] = vg[i][r] * sg[r];
                    u[r] = vu[i][r] * su[r];
                }
                swiglu(g, u, act + (size_t)(t + i) * I + i0, nr);
            }
        }
        for (; t < T; ++t) {
            float vg[RB], vu[RB];
            block_gemv(wg, xq + (size_t)t * K, sx + (size_t)t * NQ, K4, vg);
            block_gemv(wu, xq + (size_t)t * K, sx + (size_t)t * NQ, K4, vu);
            for (int r = 0; r < RB; ++r) {
                g[r] = vg[r] * sg[r];
                u[r] = vu[r] * su[r];
            }
            swiglu(g, u, act + (size_t)t * I + i0, nr);
        }
    }
    sync_team(tm);
}

/* ---------------------------------------------------------------------------------------- */
/* small ops                                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* the 16 lanes of dotf/dot_qk summed to one float, in the same fixed order on every path */
#if FRS_SIMD >= 1
static inline float hsum_2x8(__m256 a0, __m256 a1) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(_mm256_add_ps(a0, a1)), _mm256_extractf128_ps(_mm256_add_ps(a0, a1), 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}
#else
static inline float reduce_16(float *acc) {
    for (int w = 8; w > 0; w /= 2)
        for (int i = 0; i < w; ++i) acc[i] += acc[i + w];
    return acc[0];
}
#endif

/* dot product in 16 independent lanes (vectorised without reassociating a single sum) */
static inline float dotf(const float *a, const float *b, int n) {
    int d = 0;
    float s;
#if FRS_SIMD >= 1 /* AVX2 on AVX-512 CPUs too: the float side is not where the time goes */
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (; d + 16 <= n; d += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d + 8), _mm256_loadu_ps(b + d + 8), a1);
    }
    s = hsum_2x8(a0, a1);
#else
    float acc[16] = {0};
    for (; d + 16 <= n; d += 16)
        for (int i = 0; i < 16; ++i) acc[i] += a[d + i] * b[d + i];
    s = reduce_16(acc);
#endif
    for (; d < n; ++d) s += a[d] * b[d];
    return s;
}

ROW_FN void rms_norm(const float *x, const float *w, float *out, int n, float eps) {
    const float r = 1.f / sqrtf(dotf(x, x, n) / (float)n + eps);
    for (int k = 0; k < n; ++k) out[k] = x[k] * r * (w ? w[k] : 1.f);
}


/* a q or k head in place: RMS norm over hd with weight w (skipped when w is NULL), then RoPE
 * on interleaved pairs with cs = (hd / 2, 2) cos, sin of its position */
ROW_FN void norm_rope(float *v, const float *w, const float *cs, int hd, float eps) {
    if (w) rms_norm(v, w, v, hd, eps);
    for (int j = 0; j < hd / 2; ++j) {
        const float a = v[2 * j], b = v[2 * j + 1], c = cs[2 * j], s = cs[2 * j + 1];
        v[2 * j] = a * c - b * s;
        v[2 * j + 1] = a * s + b * c;
    }
}

/* ---- the fp16 KV cache: bits in uint16_t; conversions exact (half -> float) and round-to-nearest-even
 * (float -> half), in software where F16C is not compiled in, and for row tails */
typedef uint16_t kv_t;

static inline float h2f(kv_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, mant = h & 0x3ff, x;
    if (e == 0) {
        if (!mant) {
            x = sign;
        } else { /* subnormal: normalise */
            e = 127 - 15 + 1;
            while (!(mant & 0x400)) {
                mant <<= 1;
                --e;
            }
            x = sign | e << 23 | (mant & 0x3ff) << 13;
        }
    } else if (e == 31) {
        x = sign | 0x7f800000u | mant << 13;
    } else {
        x = sign | (e + 127 - 15) << 23 | mant << 13;
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static inline kv_t f2h(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000, mant = x & 0x7fffff;
    const int exp = (int)((x >> 23) & 0xff), e = exp - 127 + 15;
    if (exp == 255) return (kv_t)(sign | 0x7c00 | (mant ? 0x200 | (mant >> 13) : 0)); /* inf, quiet NaN */
    if (e >= 31) return (kv_t)(sign | 0x7c00);                                          /* overflow: inf */
    if (e <= 0) {                                                                         /* subnormal or 0 */
        if (e < -10) return (kv_t)sign;
        const uint32_t m = mant | 0x800000, shift = (uint32_t)(14 - e), rem = m & ((1u << shift) - 1),
                       mid = 1u << (shift - 1);
        uint32_t h = m >> shift;
        if (rem > mid || (rem == mid && (h & 1))) ++h;
        return (kv_t)(sign | h);
    }
    uint32_t h = (uint32_t)e << 10 | mant >> 13;
    const uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h; /* a carry into the exponent is right (up to inf) */
    return (kv_t)(sign | h);
}

/* dst (n,) fp16 <- src (n,) fp32 */
static void store_kv(kv_t *dst, const float *src, int n) {
    int d = 0;
#if FRS_SIMD >= 1
    for (; d + 8 <= n; d += 8)
        _mm_storeu_si128((__m128i *)(dst + d), _mm256_cvtps_ph(_mm256_loadu_ps(src + d), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; d < n; ++d) dst[d] = f2h(src[d]);
}

#if FRS_SIMD >= 1
static inline __m256 load_kv8(const kv_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
#endif

/* q (fp32) . k (fp16) over n values, in 16 lanes like dotf */
static inline float dot_qk(const float *q, const kv_t *k, int n) {
    int d = 0;
    float s;
#if FRS_SIMD >= 1
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (; d + 16 <= n; d += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load_kv8(k + d), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), load_kv8(k + d + 8), a1);
    }
    s = hsum_2x8(a0, a1);
#else
    float acc[16] = {0};
    for (; d + 16 <= n; d += 16)
        for (int i = 0; i < 16; ++i) acc[i] += q[d + i] * h2f(k[d + i]);
    s = reduce_16(acc);
#endif
    for (; d < n; ++d) s += q[d] * h2f(k[d]);
    return s;
}

/* s[j] = q . k_j for n key rows k_j = kb + j hd. AVX2: 8 keys at a time, q in a register per
 * 8 dims, the 8 sums reduced together (a dot product's horizontal sum costs about as much as
 * its 8 FMAs at hd = 64). */
static void qk_scores(const float *q, const kv_t *kb, int n, int hd, float *s) {
    int j = 0;
#if FRS_SIMD >= 1
    const int hd8 = hd & ~7;
    for (; j + 8 <= n; j += 8) {
        const kv_t *k = kb + (size_t)j * hd;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int d = 0; d < hd8; d += 8) {
            const __m256 qv = _mm256_loadu_ps(q + d);
            a0 = _mm256_fmadd_ps(load_kv8(k + d), qv, a0);
            a1 = _mm256_fmadd_ps(load_kv8(k + hd + d), qv, a1);
            a2 = _mm256_fmadd_ps(load_kv8(k + 2 * hd + d), qv, a2);
            a3 = _mm256_fmadd_ps(load_kv8(k + 3 * hd + d), qv, a3);
            a4 = _mm256_fmadd_ps(load_kv8(k + 4 * hd + d), qv, a4);
            a5 = _mm256_fmadd_ps(load_kv8(k + 5 * hd + d), qv, a5);
            a6 = _mm256_fmadd_ps(load_kv8(k + 6 * hd + d), qv, a6);
            a7 = _mm256_fmadd_ps(load_kv8(k + 7 * hd + d), qv, a7);
        }
        /* transpose-reduce: lane i of the result is the sum of a_i's 8 lanes */
        const __m256 h01 = _mm256_hadd_ps(a0, a1), h23 = _mm256_hadd_ps(a2, a3);
        const __m256 h45 = _mm256_hadd_ps(a4, a5), h67 = _mm256_hadd_ps(a6, a7);
        const __m256 h0123 = _mm256_hadd_ps(h01, h23), h4567 = _mm256_hadd_ps(h45, h67);
        __m256 r = _mm256_add_ps(_mm256_permute2f128_ps(h0123, h4567, 0x20), _mm256_permute2f128_ps(h0123, h4567, 0x31));
        if (hd8 < hd) { /* head dims beyond the last multiple of 8 */
            float t[8];
            for (int i = 0; i < 8; ++i) {
                t[i] = 0.f;
                for (int d = hd8; d < hd; ++d) t[i] += q[d] * h2f(k[(size_t)i * hd + d]);
            }
            r = _mm256_add_ps(r, _mm256_loadu_ps(t));
        }
        _mm256_storeu_ps(s + j, r);
    }
#endif
    for (; j < n; ++j) s[j] = dot_qk(q, kb + (size_t)j * hd, hd);
}

#if FRS_SIMD >= 1
/* exp(x) for 8 lanes: Cephes' range reduction (x = n ln2 + r, |r| <= ln2 / 2) and degree-5
 * polynomial, ~1 ulp (as expf) for x in [-87, 88]; NaN in, NaN out. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x); /* NaN x is kept: min/max return the 2nd operand */
    x = _mm256_max_ps(_mm256_set1_ps(-87.3365478515625f), x);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
#endif

/* a[k] = silu(g[k]) u[k] = g[k] u[k] / (1 + exp(-g[k])) */
ROW_FN void swiglu(const float *g, const float *u, float *a, int n) {
    int k = 0;
#if FRS_SIMD >= 1
    const __m256 one = _mm256_set1_ps(1.f), zero = _mm256_setzero_ps();
    for (; k + 8 <= n; k += 8) {
        const __m256 gv = _mm256_loadu_ps(g + k);
        const __m256 den = _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, gv)));
        _mm256_storeu_ps(a + k, _mm256_div_ps(_mm256_mul_ps(gv, _mm256_loadu_ps(u + k)), den));
    }
#endif
    for (; k < n; ++k) a[k] = g[k] * u[k] / (1.f + expf(-g[k]));
}

/* s[j] = exp(s[j] - mx) in place; returns their sum */
static float exp_shift(float *s, int n, float mx) {
    int j = 0;
    float den = 0.f;
#if FRS_SIMD >= 1
    __m256 acc = _mm256_setzero_ps();
    const __m256 m8 = _mm256_set1_ps(mx);
    for (; j + 8 <= n; j += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), m8));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float t[8];
    _mm256_storeu_ps(t, acc);
    for (int i = 0; i < 8; ++i) den += t[i];
#endif
    for (; j < n; ++j) {
        s[j] = expf(s[j] - mx);
        den += s[j];
    }
    return den;
}

/* o (hd,) += sum_j p[j] v_j over n value rows (vb, stride hd): 32 output dims in registers per
 * pass over the rows */
static void pv_accumulate(const float *p, const kv_t *vb, int n, int hd, float *o) {
    int d = 0;
#if FRS_SIMD >= 1
    for (; d + 32 <= hd; d += 32) {
        __m256 a0 = _mm256_loadu_ps(o + d), a1 = _mm256_loadu_ps(o + d + 8);
        __m256 a2 = _mm256_loadu_ps(o + d + 16), a3 = _mm256_loadu_ps(o + d + 24);
        for (int j = 0; j < n; ++j) {
            const __m256 pj = _mm256_set1_ps(p[j]);
            const kv_t *v = vb + (size_t)j * hd + d;
            a0 = _mm256_fmadd_ps(pj, load_kv8(v), a0);
            a1 = _mm256_fmadd_ps(pj, load_kv8(v + 8), a1);
            a2 = _mm256_fmadd_ps(pj, load_kv8(v + 16), a2);
            a3 = _mm256_fmadd_ps(pj, load_kv8(v + 24), a3);
        }
        _mm256_storeu_ps(o + d, a0);
        _mm256_storeu_ps(o + d + 8, a1);
        _mm256_storeu_ps(o + d + 16, a2);
        _mm256_storeu_ps(o + d + 24, a3);
    }
    for (; d + 8 <= hd; d += 8) {
        __m256 a0 = _mm256_loadu_ps(o + d);
        for (int j = 0; j < n; ++j) a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), load_kv8(vb + (size_t)j * hd + d), a0);
        _mm256_storeu_ps(o + d, a0);
    }
#endif
    for (; d < hd; ++d) {
        float a = o[d];
        for (int j = 0; j < n; ++j) a += p[j] * h2f(vb[(size_t)j * hd + d]);
        o[d] = a;
    }
}

/* G query heads q (G, stride ldq) over positions lo..hi-1 of one KV head (kb, vb: (cap, hd)):
 * m[i] = max score, l[i] = sum of exp(score - m[i]), o (G, stride ldo) = sum of exp(score - m) v
 * (not normalised: the caller divides by l, or merges chunks first). sc: (G, hi - lo) scratch.
 * Keys and values go in blocks of 32 rows (8 KB at hd = 64) that stay in L1 while the G heads
 * that share them (GQA) use them. */
#define KV_BLOCK 32
ROW_FN void attend(const float *q, int ldq, int G, int hd, const kv_t *kb, const kv_t *vb, int lo, int hi,
                   float *sc, float *m, float *l, float *o, int ldo) {
    const int n = hi - lo;
    kb += (size_t)lo * hd;
    vb += (size_t)lo * hd;
    for (int j = 0; j < n; j += KV_BLOCK) {
        const int nb = n - j < KV_BLOCK ? n - j : KV_BLOCK;
        for (int i = 0; i < G; ++i) qk_scores(q + (size_t)i * ldq, kb + (size_t)j * hd, nb, hd, sc + (size_t)i * n + j);
    }
    for (int i = 0; i < G; ++i) {
        float *si = sc + (size_t)i * n, mx = -INFINITY;
        for (int j = 0; j < n; ++j) mx = si[j] > mx ? si[j] : mx;
        m[i] = mx;
        l[i] = exp_shift(si, n, mx);
        float *oi = o + (size_t)i * ldo;
        for (int d = 0; d < hd; ++d) oi[d] = 0.f;
    }
    for (int j = 0; j < n; j += KV_BLOCK) {
        const int nb = n - j < KV_BLOCK ? n - j : KV_BLOCK;
        for (int i = 0; i < G; ++i) pv_accumulate(sc + (size_t)i * n + j, vb + (size_t)j * hd, nb, hd, o + (size_t)i * ldo);
    }
}

/* One head's attention output (hd,) from NC chunk partials of attend(): maxima m and sums l at
 * stride sml, unnormalised values o at stride so: the softmax over the union of the chunks. */
ROW_FN void merge_chunks(const float *m, const float *l, const float *o, int NC, size_t sml, size_t so, int hd,
                         float *out) {
    float mx = -INFINITY, den = 0.f;
    for (int c = 0; c < NC; ++c) mx = NANMAX(mx, m[c * sml]);
    for (int d = 0; d < hd; ++d) out[d] = 0.f;
    for (int c = 0; c < NC; ++c) {
        const float w = expf(m[c * sml] - mx);
        den += w * l[c * sml];
        for (int d = 0; d < hd; ++d) out[d] += w * o[c * so + d];
    }
    const float inv = 1.f / den;
    for (int d = 0; d < hd; ++d) out[d] *= inv;
}

/* Position chunks of one token's attention over n positions (0 .. n-1), per KV head: enough
 * (KV head, chunk) items to keep up to 4 threads busy when a token is decoded alone and the model
 * has few KV heads (SmolLM2 has 3: 2 threads would split 3 heads 2:1), chunks of >= 32 positions.
 * A function of KV and n only, used by the multi-token path too, so that a token's attention is
 * the same sum in the same order however the tokens are batched and however many threads run. */
#define MAX_CHUNKS 4
static int attn_chunks(int KV, int n) {
    int nc = (MAX_CHUNKS + KV - 1) / KV;
    const int most = n / 32 > 1 ? n / 32 : 1;
    return nc < most ? nc : most;
}
static inline int chunk_start(int n, int c, int NC) { return (int)((long)n * c / NC); }

/* ---------------------------------------------------------------------------------------- */
/* the forward pass                                                                          */
/* ---------------------------------------------------------------------------------------- */

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int team_size(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* Embedding rows of a tied model, read from the packed int8 LM head m (vocab, D): out (T, D) fp32
 * = row ids[t] x its scale. Returns 0, or -1 for an id outside the vocabulary. */
int frs_embed_packed(const frs_mat *m, const int64_t *ids, int T, float *out) {
    const int K = m->cols, K4 = K / 4;
    for (int t = 0; t < T; ++t) {
        if (ids[t] < 0 || ids[t] >= m->rows) return -1;
        const int r = (int)ids[t], b = r / RB, rr = r % RB;
        const int8_t *wb = m->w + (size_t)b * K4 * 64 + 4 * rr;
        const float s = m->scale[r];
        float *o = out + (size_t)t * K;
        for (int k = 0; k < K4; ++k)
            for (int j = 0; j < 4; ++j) o[4 * k + j] = (float)wb[64 * k + j] * s;
    }
    return 0;
}

/* Append T tokens (embeddings x_in: (T, D)) at positions P.. to the fp16 caches K, V (L, KV, cap, hd)
 * and write logits: (T, vocab) when all_logits, else (vocab,) for the last token.
 * Returns 0, or a negative code: -1 bad arguments, -2 out of memory. */
int frs_forward(const frs_model *m, const float *x_in, int T, int P, kv_t *K, kv_t *V, int cap, float *logits,
                int all_logits, int n_threads) {
    if (!m || !x_in || !K || !V || !logits || T <= 0 || P < 0 || P + T > cap || P + T > m->max_len) return -1;
    const int D = m->hidden, H = m->n_heads, KV = m->n_kv, hd = m->head_dim, I = m->inter;
    if (KV <= 0 || H % KV || hd % 2) return -1;
    for (int li = 0; li < m->n_layers; ++li) /* gate|up in alternating 16-row blocks, see qgemm_swiglu */
        if (m->layers[li].gate_up.rows != 2 * RB * ((I + RB - 1) / RB)) return -1;
    const int G = H / KV, NH = H + KV, QS = H * hd, KS = KV * hd, QKV = QS + 2 * KS;
    int kmax = D > QS ? D : QS;
    kmax = kmax > I ? kmax : I;
    const int n_out = all_logits ? T : 1;
    if (n_threads < 1) n_threads = 1;
    const int decode = T == 1; /* one token: one output row either way */
    const int NC = decode ? attn_chunks(KV, P + 1) : 1; /* decode: the chunks are work items */
    const int n_ctx = P + T;

    /* shared buffers */
    float *x = malloc(sizeof(float) * (size_t)T * D);
    float *qkv = malloc(sizeof(float) * (size_t)T * QKV);
    float *att = malloc(sizeof(float) * (size_t)T * QS);
    float *act = malloc(sizeof(float) * (size_t)T * I);
    float *xn = malloc(sizeof(float) * (size_t)T * D);
    int8_t *xq = malloc((size_t)T * kmax);
    float *sx = malloc(sizeof(float) * (size_t)T * n_qblocks(kmax)); /* block scales, row stride n_qblocks(K) */
    /* attention partials of the decode items: (KV, NC, G) maxima and sums, (KV, NC, G, hd) values */
    float *pm = malloc(sizeof(float) * (size_t)KV * NC * G);
    float *pl = malloc(sizeof(float) * (size_t)KV * NC * G);
    float *po = malloc(sizeof(float) * (size_t)KV * NC * G * hd);
    /* per thread: scores (G, n_ctx), q heads (G, hd), k head (hd), chunk partials of a multi-token
     * item (MAX_CHUNKS, G) x (hd + 2), and for decode its own copies of the normed/quantised
     * activation (kmax floats + kmax bytes) and the merged attention (QS) */
    const size_t per_thread = (size_t)G * n_ctx + (size_t)G * hd + hd + (size_t)MAX_CHUNKS * G * (hd + 2) + kmax +
                              QS + (kmax + 3) / 4 + n_qblocks(kmax) + 16;
    float *scratch = malloc(sizeof(float) * per_thread * (size_t)n_threads);
    int rc = 0;
    if (!x || !qkv || !att || !act || !xn || !xq || !sx || !pm || !pl || !po || !scratch) {
        rc = -2;
        goto done;
    }
    memcpy(x, x_in, sizeof(float) * (size_t)T * D);
    team_barrier bar;
    atomic_init(&bar.arrived, 0);
    atomic_init(&bar.phase, 0);
    bar.n = 1;

#pragma omp parallel num_threads(n_threads)
    {
        const int tid = thread_id();
        float *sc = scratch + per_thread * (size_t)(tid < n_threads ? tid : 0);
        float *qh = sc + (size_t)G * n_ctx;    /* (G, hd) */
        float *kh = qh + (size_t)G * hd;        /* (hd,) */
        float *cm = kh + hd;                    /* (MAX_CHUNKS, G) chunk maxima of a multi-token item */
        float *cl = cm + MAX_CHUNKS * G;        /* (MAX_CHUNKS, G) chunk sums */
        float *co = cl + MAX_CHUNKS * G;        /* (MAX_CHUNKS, G, hd) chunk values */
        float *own_xn = co + (size_t)MAX_CHUNKS * G * hd; /* (kmax,) */
        float *own_att = own_xn + kmax;         /* (QS,) */
        float *own_sx = own_att + QS;           /* (n_qblocks(kmax),) block scales */
        int8_t *own_xq = (int8_t *)(own_sx + n_qblocks(kmax)); /* (kmax,) bytes */
        team tm = {&bar, 0};
#pragma omp single
        bar.n = team_size(); /* the team may be smaller than asked for; single ends with a barrier */

        for (int li = 0; li < m->n_layers; ++li) {
            const frs_layer *L = &m->layers[li];
            kv_t *Kl = K + (size_t)li * KV * cap * hd, *Vl = V + (size_t)li * KV * cap * hd;
            if (decode) {
                /* every thread normalises and quantises the one row itself: no barrier */
                rms_norm(x, L->ln1, own_xn, D, m->eps);
                quantize_row(own_xn, own_xq, own_sx, D);
                qgemm(&L->qkv, own_xq, own_sx, 1, qkv, QKV, 0, &tm);
                /* (KV head, position chunk) items; the last chunk holds position P, whose k and v
                 * it writes to the cache; the G query heads are normed and rotated per item */
                const int n = P + 1;
#pragma omp for schedule(static) nowait
                for (int it = 0; it < KV * NC; ++it) {
                    const int g = it / NC, c = it % NC, lo = chunk_start(n, c, NC), hi = chunk_start(n, c + 1, NC);
                    const float *cs = m->rope + (size_t)P * hd;
                    for (int i = 0; i < G; ++i) {
                        const int h = g * G + i;
                        memcpy(qh + (size_t)i * hd, qkv + (size_t)h * hd, sizeof(float) * hd);
                        norm_rope(qh + (size_t)i * hd, L->qk_norm ? L->qk_norm + (size_t)h * hd : NULL, cs, hd, m->eps);
                    }
                    if (c == NC - 1) {
                        memcpy(kh, qkv + QS + (size_t)g * hd, sizeof(float) * hd);
                        norm_rope(kh, L->qk_norm ? L->qk_norm + (size_t)(H + g) * hd : NULL, cs, hd, m->eps);
                        store_kv(Kl + ((size_t)g * cap + P) * hd, kh, hd);
                        store_kv(Vl + ((size_t)g * cap + P) * hd, qkv + QS + KS + (size_t)g * hd, hd);
                    }
                    const size_t p = (size_t)(g * NC + c) * G;
                    attend(qh, hd, G, hd, Kl + (size_t)g * cap * hd, Vl + (size_t)g * cap * hd, lo, hi, sc,
                           pm + p, pl + p, po + p * hd, hd);
                }
                sync_team(&tm);
                /* every thread merges the chunks (softmax of the union) and quantises itself */
                for (int h = 0; h < H; ++h) {
                    const size_t p = (size_t)(h / G) * NC * G + h % G;
                    merge_chunks(pm + p, pl + p, po + p * hd, NC, G, (size_t)G * hd, hd, own_att + (size_t)h * hd);
                }
                quantize_row(own_att, own_xq, own_sx, QS);
                qgemm(&L->o, own_xq, own_sx, 1, x, D, 1, &tm);
                rms_norm(x, L->ln2, own_xn, D, m->eps);
                quantize_row(own_xn, own_xq, own_sx, D);
                qgemm_swiglu(&L->gate_up, own_xq, own_sx, 1, act, I, &tm);
                quantize_row(act, own_xq, own_sx, I);
                qgemm(&L->down, own_xq, own_sx, 1, x, D, 1, &tm);
                continue;
            }
#pragma omp for schedule(static) nowait
            for (int t = 0; t < T; ++t) {
                rms_norm(x + (size_t)t * D, L->ln1, xn + (size_t)t * D, D, m->eps);
                quantize_row(xn + (size_t)t * D, xq + (size_t)t * D, sx + (size_t)t * n_qblocks(D), D);
            }
            sync_team(&tm);
            qgemm(&L->qkv, xq, sx, T, qkv, QKV, 0, &tm);
            /* q and k heads: RMS norm over hd (if any), weight (q: x softmax scale), RoPE; k, v -> cache */
#pragma omp for schedule(static) nowait
            for (int i = 0; i < T * NH; ++i) {
                const int t = i / NH, h = i % NH;
                float *v = qkv + (size_t)t * QKV + (size_t)h * hd;
                norm_rope(v, L->qk_norm ? L->qk_norm + (size_t)h * hd : NULL, m->rope + (size_t)(P + t) * hd, hd, m->eps);
                if (h >= H) {
                    const int kh_ = h - H;
                    store_kv(Kl + ((size_t)kh_ * cap + P + t) * hd, v, hd);
                    store_kv(Vl + ((size_t)kh_ * cap + P + t) * hd, qkv + (size_t)t * QKV + QS + KS + (size_t)kh_ * hd, hd);
                }
            }
            sync_team(&tm);
            /* attention: token t sees positions 0 .. P + t; the G query heads of a KV head together,
             * in the same position chunks as a decoded token. Round-robin: later tokens have longer
             * contexts, a contiguous split would be uneven. */
#pragma omp for schedule(static, 1) nowait
            for (int i = 0; i < T * KV; ++i) {
                const int t = i / KV, g = i % KV, n = P + t + 1, nc = attn_chunks(KV, n);
                const float *q = qkv + (size_t)t * QKV + (size_t)g * G * hd;
                for (int c = 0; c < nc; ++c)
                    attend(q, hd, G, hd, Kl + (size_t)g * cap * hd, Vl + (size_t)g * cap * hd, chunk_start(n, c, nc),
                           chunk_start(n, c + 1, nc), sc, cm + c * G, cl + c * G, co + (size_t)c * G * hd, hd);
                for (int j = 0; j < G; ++j)
                    merge_chunks(cm + j, cl + j, co + (size_t)j * hd, nc, G, (size_t)G * hd, hd,
                                 att + (size_t)t * QS + (size_t)(g * G + j) * hd);
            }
            sync_team(&tm);
#pragma omp for schedule(static) nowait
            for (int t = 0; t < T; ++t) quantize_row(att + (size_t)t * QS, xq + (size_t)t * QS, sx + (size_t)t * n_qblocks(QS), QS);
            sync_team(&tm);
            qgemm(&L->o, xq, sx, T, x, D, 1, &tm);
#pragma omp for schedule(static) nowait
            for (int t = 0; t < T; ++t) {
                rms_norm(x + (size_t)t * D, L->ln2, xn + (size_t)t * D, D, m->eps);
                quantize_row(xn + (size_t)t * D, xq + (size_t)t * D, sx + (size_t)t * n_qblocks(D), D);
            }
            sync_team(&tm);
            qgemm_swiglu(&L->gate_up, xq, sx, T, act, I, &tm);
#pragma omp for schedule(static) nowait
            for (int t = 0; t < T; ++t) quantize_row(act + (size_t)t * I, xq + (size_t)t * I, sx + (size_t)t * n_qblocks(I), I);
            sync_team(&tm);
            qgemm(&L->down, xq, sx, T, x, D, 1, &tm);
        }
        if (decode) {
            rms_norm(x, m->final_norm, own_xn, D, m->eps);
            quantize_row(own_xn, own_xq, own_sx, D);
            qgemm(&m->lm_head, own_xq, own_sx, 1, logits, m->vocab, 0, &tm);
        } else {
#pragma omp for schedule(static) nowait
            for (int t = 0; t < n_out; ++t) {
                const int src = all_logits ? t : T - 1;
                rms_norm(x + (size_t)src * D, m->final_norm, xn + (size_t)t * D, D, m->eps);
                quantize_row(xn + (size_t)t * D, xq + (size_t)t * D, sx + (size_t)t * n_qblocks(D), D);
            }
            sync_team(&tm);
            qgemm(&m->lm_head, xq, sx, n_out, logits, m->vocab, 0, &tm);
        }
    }
done:
    free(x);
    free(qkv);
    free(att);
    free(act);
    free(xn);
    free(xq);
    free(sx);
    free(pm);
    free(pl);
    free(po);
    free(scratch);
    return rc;
}
