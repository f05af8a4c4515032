/* Causal-LM forward pass with int8 weights for CPUs (Qwen3 and Llama families): the native kernel
 * behind frs_ros.reasoning.lm.lean.LeanDecoder.
 *
 * Why: decoding one token reads every weight once, so it is memory-bound; the torch path spends
 * a third of each token in ~600 small op dispatches and its int8 GEMV (fbgemm, M = 1) streams
 * weights at ~60 % of the machine's read bandwidth. This file runs the whole layer stack for T
 * new tokens in one call and one OpenMP parallel region:
 *
 *   weights  int8, one fp32 scale per output row (symmetric), packed in 16-row blocks (below);
 *   inputs   each matrix product quantises its activation rows to int8 (one scale per row,
 *            |q| <= 127) and the dot products run on integers, exactly, with the SIMD the
 *            compiler targets:
 *              AVX512-VNNI  vpdpbusd (u8 x s8 -> s32) on x + 128 with the offset trick
 *                           sum_k (x_k + 128) w_k - 128 sum_k w_k = sum_k x_k w_k;
 *              AVX2         vpmaddubsw on |x| and sign(x) w (pairs fit s16: 2 * 127 * 127 < 2^15),
 *                           then vpmaddwd with ones (s32);
 *              plain C      (FRS_PORTABLE, or neither) the same integer sums;
 *   layout   the caller fuses q|k|v and gate|up, permutes q/k head dims to interleaved RoPE pairs
 *            and folds the softmax scale into the q-norm weight (Qwen3) or into the Wq rows
 *            (Llama: no q/k norm, qk_norm = NULL); a tied LM head is the embedding matrix;
 *   cache    K and V: (L, KV, cap, hd) fp32, token P + t written at row P + t.
 *
 * Decoding one token (T = 1) is organised around the barriers, which at a small width cost as
 * much as the small ops: 5 per layer (after q|k|v, attention, o, gate|up, down). Every thread
 * computes the norms, activation quantisation and the attention merge itself (a few hundred
 * values: cheaper than a barrier), and the attention over the cache is split into (KV head,
 * position chunk) items so that 3 KV heads still keep 2 threads equally busy.
 *
 * No allocation of weights, no Python: the caller owns every buffer it passes. Thread-safe for
 * distinct caches; frs_forward() allocates its scratch per call. Results do not depend on the
 * number of threads (every output value is computed by one thread, in a fixed order).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if !defined(FRS_PORTABLE) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define FRS_SIMD 2 /* AVX512-VNNI */
#elif !defined(FRS_PORTABLE) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FRS_SIMD 1 /* AVX2 */
#else
#define FRS_SIMD 0 /* plain C */
#endif

#define FRS_ABI_VERSION 3
/* Row-level helpers are called from the decode and the multi-token paths; kept out of line so both
 * run the same machine code (same FMA contraction and vectorisation) and a token decoded alone
 * gives the same bits as in a prefill. */
#define ROW_FN static __attribute__((noinline))

typedef struct {
    const int8_t *w;       /* packed (ceil(rows / 16), cols / 4, 16, 4), see qgemm */
    const float *scale;    /* (rows,) */
    const int32_t *rowsum; /* (rows,) sum of each row's int8 weights (the VNNI offset correction) */
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
/* activation quantisation and the int8 matrix product                                      */
/* ---------------------------------------------------------------------------------------- */

/* the byte stored for a quantised activation q in [-127, 127]: q + 128 (u8) for vpdpbusd, else q */
#define ACT_OFFSET (FRS_SIMD == 2 ? 128 : 0)

/* max |x_k| in 16 independent lanes (vectorised; a running scalar max is not); NaN if any is NaN */
#define NANMAX(a, b) ((b) > (a) || (b) != (b) ? (b) : (a))
static float absmax(const float *x, int n) {
    float m[16] = {0};
    int k = 0;
    for (; k + 16 <= n; k += 16)
        for (int i = 0; i < 16; ++i) m[i] = NANMAX(m[i], fabsf(x[k + i]));
    float amax = 0.f;
    for (int i = 0; i < 16; ++i) amax = NANMAX(amax, m[i]);
    for (; k < n; ++k) amax = NANMAX(amax, fabsf(x[k]));
    return amax;
}

/* x (n,) fp32 -> xq (n,) bytes of round(x / s) (+ ACT_OFFSET), returns s (0 for an all-zero row). */
ROW_FN float quantize_row(const float *x, uint8_t *xq, int n) {
    const float amax = absmax(x, n);
    if (!(amax > 0.f) || !isfinite(amax)) {
        memset(xq, ACT_OFFSET, (size_t)n);
        return amax > 0.f || amax != amax ? NAN : 0.f; /* inf/nan input: NaN output, as a float model gives */
    }
    const float inv = 127.f / amax;
    for (int k = 0; k < n; ++k) { /* round half away from zero; |r| <= 127 by construction */
        const float r = x[k] * inv;
        xq[k] = (uint8_t)((int)(r + (r >= 0.f ? 0.5f : -0.5f)) + ACT_OFFSET);
    }
    return amax / 127.f;
}

/* The weights are packed for streaming: blocks of 16 output rows, and inside a block, for each
 * group of 4 input columns, the 16 rows' 4 bytes (64 bytes, one cache line):
 *     packed[b][k4][r][j] = W[16 b + r][4 k4 + j]      (rows padded to a multiple of 16 with 0)
 * so a matrix product reads its weights strictly sequentially, and one 64-byte line times the
 * broadcast 4 activation bytes accumulates 16 output rows at once (no horizontal sums; AVX2 does
 * it as two 32-byte halves of 8 rows). Scales and row sums are not padded. Requires cols % 4 == 0. */
#define RB 16 /* rows per block */
#if FRS_SIMD == 1
#define TT 4 /* tokens per tile in a multi-token product (prefill): 4 x 2 accumulators of 16 ymm */
#else
#define TT 8
#endif

static inline void store_rows(const frs_mat *m, int b, const int32_t *acc, float sxt, float *yt, int accumulate) {
    const int r0 = RB * b, nr = m->rows - r0 < RB ? m->rows - r0 : RB;
    for (int r = 0; r < nr; ++r) {
        float v = (float)(acc[r] - ACT_OFFSET * m->rowsum[r0 + r]) * sxt * m->scale[r0 + r];
        yt[r0 + r] = accumulate ? yt[r0 + r] + v : v;
    }
}

#if FRS_SIMD == 2
static inline __m512i bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
#elif FRS_SIMD == 1
static inline __m256i bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}
/* 8 rows x 4 columns: per row sum_j x_j w_j as s32 (ax = |x|, x broadcast; exact, see header) */
static inline __m256i dot8x4(__m256i ax, __m256i x, __m256i w, __m256i ones) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w, x)), ones);
}
#endif

/* one block of 16 rows times one token: acc[r] = sum_k x[k] W[r][k] (+ offset, see ACT_OFFSET) */
static inline void block_gemv(const int8_t *wb, const uint8_t *xq, int K4, int32_t *acc) {
#if FRS_SIMD == 2
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    int k = 0;
    for (; k + 4 <= K4; k += 4) { /* four independent chains hide the vpdpbusd latency */
        a0 = _mm512_dpbusd_epi32(a0, bcast4(xq + 4 * k), _mm512_loadu_si512((const void *)(wb + 64 * k)));
        a1 = _mm512_dpbusd_epi32(a1, bcast4(xq + 4 * k + 4), _mm512_loadu_si512((const void *)(wb + 64 * k + 64)));
        a2 = _mm512_dpbusd_epi32(a2, bcast4(xq + 4 * k + 8), _mm512_loadu_si512((const void *)(wb + 64 * k + 128)));
        a3 = _mm512_dpbusd_epi32(a3, bcast4(xq + 4 * k + 12), _mm512_loadu_si512((const void *)(wb + 64 * k + 192)));
    }
    for (; k < K4; ++k)
        a0 = _mm512_dpbusd_epi32(a0, bcast4(xq + 4 * k), _mm512_loadu_si512((const void *)(wb + 64 * k)));
    _mm512_storeu_si512((void *)acc, _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
#elif FRS_SIMD == 1
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, b0 = a0, b1 = a0;
    int k = 0;
    for (; k + 2 <= K4; k += 2) { /* two 4-column groups per pass: independent accumulators */
        const __m256i x0 = bcast4(xq + 4 * k), x1 = bcast4(xq + 4 * k + 4);
        const __m256i ax0 = _mm256_abs_epi8(x0), ax1 = _mm256_abs_epi8(x1);
        const int8_t *w = wb + 64 * k;
        a0 = _mm256_add_epi32(a0, dot8x4(ax0, x0, _mm256_loadu_si256((const __m256i *)w), ones));
        a1 = _mm256_add_epi32(a1, dot8x4(ax0, x0, _mm256_loadu_si256((const __m256i *)(w + 32)), ones));
        b0 = _mm256_add_epi32(b0, dot8x4(ax1, x1, _mm256_loadu_si256((const __m256i *)(w + 64)), ones));
        b1 = _mm256_add_epi32(b1, dot8x4(ax1, x1, _mm256_loadu_si256((const __m256i *)(w + 96)), ones));
    }
    for (; k < K4; ++k) {
        const __m256i x0 = bcast4(xq + 4 * k), ax0 = _mm256_abs_epi8(x0);
        const int8_t *w = wb + 64 * k;
        a0 = _mm256_add_epi32(a0, dot8x4(ax0, x0, _mm256_loadu_si256((const __m256i *)w), ones));
        a1 = _mm256_add_epi32(a1, dot8x4(ax0, x0, _mm256_loadu_si256((const __m256i *)(w + 32)), ones));
    }
    _mm256_storeu_si256((__m256i *)acc, _mm256_add_epi32(a0, b0));
    _mm256_storeu_si256((__m256i *)(acc + 8), _mm256_add_epi32(a1, b1));
#else
    for (int r = 0; r < RB; ++r) acc[r] = 0;
    const int8_t *xs = (const int8_t *)xq; /* ACT_OFFSET is 0: the bytes are the signed values */
    for (int k = 0; k < K4; ++k)
        for (int r = 0; r < RB; ++r)
            for (int j = 0; j < 4; ++j) acc[r] += (int32_t)xs[4 * k + j] * (int32_t)wb[64 * k + 4 * r + j];
#endif
}

/* one block of 16 rows times TT tokens (xq rows at stride K): acc[t][r] */
static inline void block_gemm(const int8_t *wb, const uint8_t *xq, int K, int32_t acc[TT][RB]) {
    const int K4 = K / 4;
#if FRS_SIMD == 2
    __m512i a[TT];
    for (int t = 0; t < TT; ++t) a[t] = _mm512_setzero_si512();
    for (int k = 0; k < K4; ++k) {
        const __m512i wv = _mm512_loadu_si512((const void *)(wb + 64 * k));
#pragma GCC unroll 8
        for (int t = 0; t < TT; ++t) a[t] = _mm512_dpbusd_epi32(a[t], bcast4(xq + (size_t)t * K + 4 * k), wv);
    }
    for (int t = 0; t < TT; ++t) _mm512_storeu_si512((void *)acc[t], a[t]);
#elif FRS_SIMD == 1
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a[TT][2];
    for (int t = 0; t < TT; ++t) a[t][0] = a[t][1] = _mm256_setzero_si256();
    for (int k = 0; k < K4; ++k) {
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
        _mm256_storeu_si256((__m256i *)acc[t], a[t][0]);
        _mm256_storeu_si256((__m256i *)(acc[t] + 8), a[t][1]);
    }
#else
    for (int t = 0; t < TT; ++t) block_gemv(wb, xq + (size_t)t * K, K4, acc[t]);
#endif
}

/* y[t, r] (+)= (W xq_t)[r] for T quantised rows (xq: (T, cols), sx: (T,)), y row stride ldy.
 * Work-shared over the 16-row blocks (every thread of the enclosing parallel region calls it;
 * ends with the implicit barrier); a block's weights (16 x cols bytes) stay in cache while all T
 * rows use them, and each thread streams one contiguous range of blocks. */
static void qgemm(const frs_mat *m, const uint8_t *xq, const float *sx, int T, float *y, int ldy, int accumulate) {
    const int K = m->cols, K4 = K / 4, nb = (m->rows + RB - 1) / RB;
#pragma omp for schedule(static)
    for (int b = 0; b < nb; ++b) {
        const int8_t *wb = m->w + (size_t)b * K4 * 64;
        int t = 0;
        for (; t + TT <= T; t += TT) {
            int32_t acc[TT][RB];
            block_gemm(wb, xq + (size_t)t * K, K, acc);
            for (int i = 0; i < TT; ++i) store_rows(m, b, acc[i], sx[t + i], y + (size_t)(t + i) * ldy, accumulate);
        }
        for (; t < T; ++t) {
            int32_t acc[RB];
            block_gemv(wb, xq + (size_t)t * K, K4, acc);
            store_rows(m, b, acc, sx[t], y + (size_t)t * ldy, accumulate);
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* small ops                                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* dot product in 16 independent lanes (vectorised without reassociating a single sum) */
static inline float dotf(const float *a, const float *b, int n) {
    int d = 0;
    float s;
#if FRS_SIMD == 2
    __m512 acc = _mm512_setzero_ps();
    for (; d + 16 <= n; d += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + d), _mm512_loadu_ps(b + d), acc);
    s = _mm512_reduce_add_ps(acc);
#elif FRS_SIMD == 1
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (; d + 16 <= n; d += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d + 8), _mm256_loadu_ps(b + d + 8), a1);
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(_mm256_add_ps(a0, a1)), _mm256_extractf128_ps(_mm256_add_ps(a0, a1), 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    s = _mm_cvtss_f32(h);
#else
    float acc[16] = {0};
    for (; d + 16 <= n; d += 16)
        for (int i = 0; i < 16; ++i) acc[i] += a[d + i] * b[d + i];
    for (int w = 8; w > 0; w /= 2)
        for (int i = 0; i < w; ++i) acc[i] += acc[i + w];
    s = acc[0];
#endif
    for (; d < n; ++d) s += a[d] * b[d];
    return s;
}

ROW_FN void rms_norm(const float *x, const float *w, float *out, int n, float eps) {
    const float r = 1.f / sqrtf(dotf(x, x, n) / (float)n + eps);
    for (int k = 0; k < n; ++k) out[k] = x[k] * r * (w ? w[k] : 1.f);
}

/* a[k] = silu(g[k]) u[k] */
ROW_FN void swiglu(const float *g, const float *u, float *a, int n) {
    for (int k = 0; k < n; ++k) a[k] = g[k] / (1.f + expf(-g[k])) * u[k];
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

/* G query heads q (G, stride ldq) over positions lo..hi-1 of one KV head (kb, vb: (cap, hd)):
 * m[i] = max score, l[i] = sum of exp(score - m[i]), o (G, stride ldo) = sum of exp(score - m) v
 * (not normalised: the caller divides by l, or merges chunks first). sc: (G, hi - lo) scratch.
 * Each key and value row is read once for the G heads that share it (GQA). */
ROW_FN void attend(const float *q, int ldq, int G, int hd, const float *kb, const float *vb, int lo, int hi,
                   float *sc, float *m, float *l, float *o, int ldo) {
    const int n = hi - lo;
    for (int i = 0; i < G; ++i) m[i] = -INFINITY;
    for (int j = 0; j < n; ++j) {
        const float *k = kb + (size_t)(lo + j) * hd;
        for (int i = 0; i < G; ++i) {
            const float s = dotf(q + (size_t)i * ldq, k, hd);
            sc[(size_t)i * n + j] = s;
            m[i] = s > m[i] ? s : m[i];
        }
    }
    for (int i = 0; i < G; ++i) {
        float *si = sc + (size_t)i * n, den = 0.f;
        const float mi = m[i];
        for (int j = 0; j < n; ++j) {
            si[j] = expf(si[j] - mi);
            den += si[j];
        }
        l[i] = den;
        float *oi = o + (size_t)i * ldo;
        for (int d = 0; d < hd; ++d) oi[d] = 0.f;
    }
    int j = 0;
    for (; j + 4 <= n; j += 4) { /* four values per pass over o: a quarter of the o loads/stores */
        const float *v0 = vb + (size_t)(lo + j) * hd, *v1 = v0 + hd, *v2 = v1 + hd, *v3 = v2 + hd;
        for (int i = 0; i < G; ++i) {
            const float *p = sc + (size_t)i * n + j;
            const float p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3];
            float *oi = o + (size_t)i * ldo;
            for (int d = 0; d < hd; ++d) oi[d] += p0 * v0[d] + p1 * v1[d] + p2 * v2[d] + p3 * v3[d];
        }
    }
    for (; j < n; ++j) {
        const float *vj = vb + (size_t)(lo + j) * hd;
        for (int i = 0; i < G; ++i) {
            const float p = sc[(size_t)i * n + j];
            float *oi = o + (size_t)i * ldo;
            for (int d = 0; d < hd; ++d) oi[d] += p * vj[d];
        }
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

/* Append T tokens (embeddings x_in: (T, D)) at positions P.. to the caches K, V (L, KV, cap, hd)
 * and write logits: (T, vocab) when all_logits, else (vocab,) for the last token.
 * Returns 0, or a negative code: -1 bad arguments, -2 out of memory. */
int frs_forward(const frs_model *m, const float *x_in, int T, int P, float *K, float *V, int cap, float *logits,
                int all_logits, int n_threads) {
    if (!m || !x_in || !K || !V || !logits || T <= 0 || P < 0 || P + T > cap || P + T > m->max_len) return -1;
    const int D = m->hidden, H = m->n_heads, KV = m->n_kv, hd = m->head_dim, I = m->inter;
    if (KV <= 0 || H % KV || hd % 2) return -1;
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
    float *gu = malloc(sizeof(float) * (size_t)T * 2 * I);
    float *act = malloc(sizeof(float) * (size_t)T * I);
    float *xn = malloc(sizeof(float) * (size_t)T * D);
    uint8_t *xq = malloc((size_t)T * kmax);
    float *sx = malloc(sizeof(float) * (size_t)T);
    /* attention partials of the decode items: (KV, NC, G) maxima and sums, (KV, NC, G, hd) values */
    float *pm = malloc(sizeof(float) * (size_t)KV * NC * G);
    float *pl = malloc(sizeof(float) * (size_t)KV * NC * G);
    float *po = malloc(sizeof(float) * (size_t)KV * NC * G * hd);
    /* per thread: scores (G, n_ctx), q heads (G, hd), k head (hd), chunk partials of a multi-token
     * item (MAX_CHUNKS, G) x (hd + 2), and for decode its own copies of the normed/quantised
     * activation (kmax floats + kmax bytes) and the merged attention (QS) */
    const size_t per_thread = (size_t)G * n_ctx + (size_t)G * hd + hd + (size_t)MAX_CHUNKS * G * (hd + 2) + kmax +
                              QS + (kmax + 3) / 4 + 16;
    float *scratch = malloc(sizeof(float) * per_thread * (size_t)n_threads);
    int rc = 0;
    if (!x || !qkv || !att || !gu || !act || !xn || !xq || !sx || !pm || !pl || !po || !scratch) {
        rc = -2;
        goto done;
    }
    memcpy(x, x_in, sizeof(float) * (size_t)T * D);

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
        uint8_t *own_xq = (uint8_t *)(own_att + QS); /* (kmax,) bytes */
        float own_sx = 0.f;

        for (int li = 0; li < m->n_layers; ++li) {
            const frs_layer *L = &m->layers[li];
            float *Kl = K + (size_t)li * KV * cap * hd, *Vl = V + (size_t)li * KV * cap * hd;
            if (decode) {
                /* every thread normalises and quantises the one row itself: no barrier */
                rms_norm(x, L->ln1, own_xn, D, m->eps);
                own_sx = quantize_row(own_xn, own_xq, D);
                qgemm(&L->qkv, own_xq, &own_sx, 1, qkv, QKV, 0);
                /* (KV head, position chunk) items; the last chunk holds position P, whose k and v
                 * it writes to the cache; the G query heads are normed and rotated per item */
                const int n = P + 1;
#pragma omp for schedule(static)
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
                        memcpy(Kl + ((size_t)g * cap + P) * hd, kh, sizeof(float) * hd);
                        memcpy(Vl + ((size_t)g * cap + P) * hd, qkv + QS + KS + (size_t)g * hd, sizeof(float) * hd);
                    }
                    const size_t p = (size_t)(g * NC + c) * G;
                    attend(qh, hd, G, hd, Kl + (size_t)g * cap * hd, Vl + (size_t)g * cap * hd, lo, hi, sc,
                           pm + p, pl + p, po + p * hd, hd);
                }
                /* every thread merges the chunks (softmax of the union) and quantises itself */
                for (int h = 0; h < H; ++h) {
                    const size_t p = (size_t)(h / G) * NC * G + h % G;
                    merge_chunks(pm + p, pl + p, po + p * hd, NC, G, (size_t)G * hd, hd, own_att + (size_t)h * hd);
                }
                own_sx = quantize_row(own_att, own_xq, QS);
                qgemm(&L->o, own_xq, &own_sx, 1, x, D, 1);
                rms_norm(x, L->ln2, own_xn, D, m->eps);
                own_sx = quantize_row(own_xn, own_xq, D);
                qgemm(&L->gate_up, own_xq, &own_sx, 1, gu, 2 * I, 0);
                swiglu(gu, gu + I, own_xn, I);
                own_sx = quantize_row(own_xn, own_xq, I);
                qgemm(&L->down, own_xq, &own_sx, 1, x, D, 1);
                continue;
            }
#pragma omp for schedule(static)
            for (int t = 0; t < T; ++t) {
                rms_norm(x + (size_t)t * D, L->ln1, xn + (size_t)t * D, D, m->eps);
                sx[t] = quantize_row(xn + (size_t)t * D, xq + (size_t)t * D, D);
            }
            qgemm(&L->qkv, xq, sx, T, qkv, QKV, 0);
            /* q and k heads: RMS norm over hd (if any), weight (q: x softmax scale), RoPE; k, v -> cache */
#pragma omp for schedule(static)
            for (int i = 0; i < T * NH; ++i) {
                const int t = i / NH, h = i % NH;
                float *v = qkv + (size_t)t * QKV + (size_t)h * hd;
                norm_rope(v, L->qk_norm ? L->qk_norm + (size_t)h * hd : NULL, m->rope + (size_t)(P + t) * hd, hd, m->eps);
                if (h >= H) {
                    const int kh_ = h - H;
                    memcpy(Kl + ((size_t)kh_ * cap + P + t) * hd, v, sizeof(float) * hd);
                    memcpy(Vl + ((size_t)kh_ * cap + P + t) * hd, qkv + (size_t)t * QKV + QS + KS + (size_t)kh_ * hd,
                           sizeof(float) * hd);
                }
            }
            /* attention: token t sees positions 0 .. P + t; the G query heads of a KV head together,
             * in the same position chunks as a decoded token. Round-robin: later tokens have longer
             * contexts, a contiguous split would be uneven. */
#pragma omp for schedule(static, 1)
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
#pragma omp for schedule(static)
            for (int t = 0; t < T; ++t) sx[t] = quantize_row(att + (size_t)t * QS, xq + (size_t)t * QS, QS);
            qgemm(&L->o, xq, sx, T, x, D, 1);
#pragma omp for schedule(static)
            for (int t = 0; t < T; ++t) {
                rms_norm(x + (size_t)t * D, L->ln2, xn + (size_t)t * D, D, m->eps);
                sx[t] = quantize_row(xn + (size_t)t * D, xq + (size_t)t * D, D);
            }
            qgemm(&L->gate_up, xq, sx, T, gu, 2 * I, 0);
#pragma omp for schedule(static)
            for (int t = 0; t < T; ++t) {
                swiglu(gu + (size_t)t * 2 * I, gu + (size_t)t * 2 * I + I, act + (size_t)t * I, I);
                sx[t] = quantize_row(act + (size_t)t * I, xq + (size_t)t * I, I);
            }
            qgemm(&L->down, xq, sx, T, x, D, 1);
        }
        if (decode) {
            rms_norm(x, m->final_norm, own_xn, D, m->eps);
            own_sx = quantize_row(own_xn, own_xq, D);
            qgemm(&m->lm_head, own_xq, &own_sx, 1, logits, m->vocab, 0);
        } else {
#pragma omp for schedule(static)
            for (int t = 0; t < n_out; ++t) {
                const int src = all_logits ? t : T - 1;
                rms_norm(x + (size_t)src * D, m->final_norm, xn + (size_t)t * D, D, m->eps);
                sx[t] = quantize_row(xn + (size_t)t * D, xq + (size_t)t * D, D);
            }
            qgemm(&m->lm_head, xq, sx, n_out, logits, m->vocab, 0);
        }
    }
done:
    free(x);
    free(qkv);
    free(att);
    free(gu);
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
