/* Qwen3 forward pass with int8 weights for CPUs: the native kernel behind frs_ros.optim.LeanDecoder.
 *
 * Why: decoding one token reads every weight once, so it is memory-bound; the torch path spends
 * a third of each token in ~600 small op dispatches and its int8 GEMV (fbgemm, M = 1) streams
 * weights at ~60 % of the machine's read bandwidth. This file runs the whole layer stack for T
 * new tokens in one call and one OpenMP parallel region:
 *
 *   weights  int8, one fp32 scale per output row (symmetric), packed in 16-row blocks (below);
 *   inputs   each matrix product quantises its activation rows to int8 (one scale per row),
 *            the dot products run as u8 x s8 -> s32 (AVX512-VNNI vpdpbusd where the compiler
 *            targets it, plain C otherwise) with the usual +128 offset trick:
 *                sum_k (x_k + 128) w_k - 128 sum_k w_k = sum_k x_k w_k;
 *   layout   the caller fuses q|k|v and gate|up, permutes q/k head dims to interleaved RoPE pairs
 *            and folds the softmax scale into the q-norm weight (see LeanDecoder);
 *   cache    K and V: (L, KV, cap, hd) fp32, token P + t written at row P + t.
 *
 * No allocation of weights, no Python: the caller owns every buffer it passes. Thread-safe for
 * distinct caches; frs_forward() allocates its scratch per call.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && !defined(FRS_PORTABLE)
#include <immintrin.h>
#define FRS_VNNI 1
#else
#define FRS_VNNI 0
#endif

#define FRS_ABI_VERSION 2

typedef struct {
    const int8_t *w;       /* packed (ceil(rows / 16), cols / 4, 16, 4), see qgemm */
    const float *scale;    /* (rows,) */
    const int32_t *rowsum; /* (rows,) sum of each row's int8 weights */
    int32_t rows, cols;
} frs_mat;

typedef struct {
    frs_mat qkv, o, gate_up, down;
    const float *ln1, *ln2; /* (D,) */
    const float *qk_norm;   /* (H + KV, hd) */
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
int frs_has_vnni(void) { return FRS_VNNI; }

/* ---------------------------------------------------------------------------------------- */
/* activation quantisation and the int8 matrix product                                      */
/* ---------------------------------------------------------------------------------------- */

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

/* x (n,) fp32 -> xu (n,) u8 = round(x / s) + 128, returns s (0 for an all-zero row). */
static float quantize_row(const float *x, uint8_t *xu, int n) {
    const float amax = absmax(x, n);
    if (!(amax > 0.f) || !isfinite(amax)) {
        memset(xu, 128, (size_t)n);
        return amax > 0.f || amax != amax ? NAN : 0.f; /* inf/nan input: NaN output, as a float model gives */
    }
    const float inv = 127.f / amax;
    for (int k = 0; k < n; ++k) { /* round half away from zero; |r| <= 127 by construction */
        const float r = x[k] * inv;
        xu[k] = (uint8_t)((int)(r + (r >= 0.f ? 0.5f : -0.5f)) + 128);
    }
    return amax / 127.f;
}

/* The weights are packed for streaming: blocks of 16 output rows, and inside a block, for each
 * group of 4 input columns, the 16 rows' 4 bytes (64 bytes, one cache line):
 *     packed[b][k4][r][j] = W[16 b + r][4 k4 + j]      (rows padded to a multiple of 16 with 0)
 * so a matrix product reads its weights strictly sequentially, and one vpdpbusd of a 64-byte
 * line with the broadcast 4 activation bytes accumulates 16 output rows at once (no horizontal
 * sums). Scales and row sums are not padded. Requires cols % 4 == 0. */
#define RB 16 /* rows per block */
#define TT 8  /* tokens per tile in a multi-token product (prefill) */

static inline void store_rows(const frs_mat *m, int b, const int32_t *acc, float sxt, float *yt, int accumulate) {
    const int r0 = RB * b, nr = m->rows - r0 < RB ? m->rows - r0 : RB;
    for (int r = 0; r < nr; ++r) {
        float v = (float)(acc[r] - 128 * m->rowsum[r0 + r]) * sxt * m->scale[r0 + r];
        yt[r0 + r] = accumulate ? yt[r0 + r] + v : v;
    }
}

#if FRS_VNNI
static inline __m512i bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
#endif

/* one block of 16 rows times one token: acc[r] = sum_k xu[k] W[r][k] */
static inline void block_gemv(const int8_t *wb, const uint8_t *xu, int K4, int32_t *acc) {
#if FRS_VNNI
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    int k = 0;
    for (; k + 4 <= K4; k += 4) { /* four independent chains hide the vpdpbusd latency */
        a0 = _mm512_dpbusd_epi32(a0, bcast4(xu + 4 * k), _mm512_loadu_si512((const void *)(wb + 64 * k)));
        a1 = _mm512_dpbusd_epi32(a1, bcast4(xu + 4 * k + 4), _mm512_loadu_si512((const void *)(wb + 64 * k + 64)));
        a2 = _mm512_dpbusd_epi32(a2, bcast4(xu + 4 * k + 8), _mm512_loadu_si512((const void *)(wb + 64 * k + 128)));
        a3 = _mm512_dpbusd_epi32(a3, bcast4(xu + 4 * k + 12), _mm512_loadu_si512((const void *)(wb + 64 * k + 192)));
    }
    for (; k < K4; ++k)
        a0 = _mm512_dpbusd_epi32(a0, bcast4(xu + 4 * k), _mm512_loadu_si512((const void *)(wb + 64 * k)));
    _mm512_storeu_si512((void *)acc, _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
#else
    for (int r = 0; r < RB; ++r) acc[r] = 0;
    for (int k = 0; k < K4; ++k)
        for (int r = 0; r < RB; ++r)
            for (int j = 0; j < 4; ++j) acc[r] += (int32_t)xu[4 * k + j] * (int32_t)wb[64 * k + 4 * r + j];
#endif
}

/* one block of 16 rows times TT tokens (xu rows at stride K): acc[t][r] */
static inline void block_gemm(const int8_t *wb, const uint8_t *xu, int K, int32_t acc[TT][RB]) {
    const int K4 = K / 4;
#if FRS_VNNI
    __m512i a[TT];
    for (int t = 0; t < TT; ++t) a[t] = _mm512_setzero_si512();
    for (int k = 0; k < K4; ++k) {
        const __m512i wv = _mm512_loadu_si512((const void *)(wb + 64 * k));
#pragma GCC unroll 8
        for (int t = 0; t < TT; ++t) a[t] = _mm512_dpbusd_epi32(a[t], bcast4(xu + (size_t)t * K + 4 * k), wv);
    }
    for (int t = 0; t < TT; ++t) _mm512_storeu_si512((void *)acc[t], a[t]);
#else
    for (int t = 0; t < TT; ++t) block_gemv(wb, xu + (size_t)t * K, K4, acc[t]);
#endif
}

/* y[t, r] (+)= (W xq_t)[r] for T quantised rows (xu: (T, cols), sx: (T,)), y row stride ldy.
 * Work-shared over the 16-row blocks (every thread of the enclosing parallel region calls it);
 * a block's weights (16 x cols bytes) stay in cache while all T rows use them. */
static void qgemm(const frs_mat *m, const uint8_t *xu, const float *sx, int T, float *y, int ldy, int accumulate) {
    const int K = m->cols, K4 = K / 4, nb = (m->rows + RB - 1) / RB;
#pragma omp for schedule(static)
    for (int b = 0; b < nb; ++b) {
        const int8_t *wb = m->w + (size_t)b * K4 * 64;
        int t = 0;
        for (; t + TT <= T; t += TT) {
            int32_t acc[TT][RB];
            block_gemm(wb, xu + (size_t)t * K, K, acc);
            for (int i = 0; i < TT; ++i) store_rows(m, b, acc[i], sx[t + i], y + (size_t)(t + i) * ldy, accumulate);
        }
        for (; t < T; ++t) {
            int32_t acc[RB];
            block_gemv(wb, xu + (size_t)t * K, K4, acc);
            store_rows(m, b, acc, sx[t], y + (size_t)t * ldy, accumulate);
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* small ops                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static inline float dotf(const float *a, const float *b, int n);

static void rms_norm(const float *x, const float *w, float *out, int n, float eps) {
    const float r = 1.f / sqrtf(dotf(x, x, n) / (float)n + eps);
    for (int k = 0; k < n; ++k) out[k] = x[k] * r * (w ? w[k] : 1.f);
}

static inline float silu(float g) { return g / (1.f + expf(-g)); }

/* dot product in 16 independent lanes (vectorised without reassociating a single sum) */
static inline float dotf(const float *a, const float *b, int n) {
    int d = 0;
    float s;
#if FRS_VNNI
    __m512 acc = _mm512_setzero_ps();
    for (; d + 16 <= n; d += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + d), _mm512_loadu_ps(b + d), acc);
    s = _mm512_reduce_add_ps(acc);
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

/* ---------------------------------------------------------------------------------------- */
/* the forward pass                                                                          */
/* ---------------------------------------------------------------------------------------- */

/* Append T tokens (embeddings x_in: (T, D)) at positions P.. to the caches K, V (L, KV, cap, hd)
 * and write logits: (T, vocab) when all_logits, else (vocab,) for the last token.
 * Returns 0, or a negative code: -1 bad arguments, -2 out of memory. */
int frs_forward(const frs_model *m, const float *x_in, int T, int P, float *K, float *V, int cap, float *logits,
                int all_logits, int n_threads) {
    if (!m || !x_in || !K || !V || !logits || T <= 0 || P < 0 || P + T > cap || P + T > m->max_len) return -1;
    const int D = m->hidden, H = m->n_heads, KV = m->n_kv, hd = m->head_dim, I = m->inter;
    const int G = H / KV, NH = H + KV, QS = H * hd, KS = KV * hd, QKV = QS + 2 * KS, half = hd / 2;
    int kmax = D > QS ? D : QS;
    kmax = kmax > I ? kmax : I;
    const int n_out = all_logits ? T : 1;
    if (n_threads < 1) n_threads = 1;

    float *x = malloc(sizeof(float) * (size_t)T * D);
    float *qkv = malloc(sizeof(float) * (size_t)T * QKV);
    float *att = malloc(sizeof(float) * (size_t)T * QS);
    float *gu = malloc(sizeof(float) * (size_t)T * 2 * I);
    float *act = malloc(sizeof(float) * (size_t)T * I);
    float *xn = malloc(sizeof(float) * (size_t)T * D);
    uint8_t *xu = malloc((size_t)T * kmax);
    float *sx = malloc(sizeof(float) * (size_t)T);
    float *scores = malloc(sizeof(float) * (size_t)n_threads * (P + T));
    int rc = 0;
    if (!x || !qkv || !att || !gu || !act || !xn || !xu || !sx || !scores) {
        rc = -2;
        goto done;
    }
    memcpy(x, x_in, sizeof(float) * (size_t)T * D);

#pragma omp parallel num_threads(n_threads)
    {
#ifdef _OPENMP
        float *sc = scores + (size_t)omp_get_thread_num() * (P + T);
#else
        float *sc = scores;
#endif
        for (int li = 0; li < m->n_layers; ++li) {
            const frs_layer *L = &m->layers[li];
            float *Kl = K + (size_t)li * KV * cap * hd, *Vl = V + (size_t)li * KV * cap * hd;
#pragma omp for schedule(static)
            for (int t = 0; t < T; ++t) {
                rms_norm(x + (size_t)t * D, L->ln1, xn + (size_t)t * D, D, m->eps);
                sx[t] = quantize_row(xn + (size_t)t * D, xu + (size_t)t * D, D);
            }
            qgemm(&L->qkv, xu, sx, T, qkv, QKV, 0);
            /* q and k heads: RMS norm over hd, weight (q: x softmax scale), RoPE; k and v -> cache */
#pragma omp for schedule(static)
            for (int i = 0; i < T * NH; ++i) {
                const int t = i / NH, h = i % NH;
                float *v = qkv + (size_t)t * QKV + (size_t)h * hd;
                rms_norm(v, L->qk_norm + (size_t)h * hd, v, hd, m->eps);
                const float *cs = m->rope + (size_t)(P + t) * hd;
                for (int j = 0; j < half; ++j) {
                    float a = v[2 * j], b = v[2 * j + 1], c = cs[2 * j], s = cs[2 * j + 1];
                    v[2 * j] = a * c - b * s;
                    v[2 * j + 1] = a * s + b * c;
                }
                if (h >= H) {
                    const int kh = h - H;
                    memcpy(Kl + ((size_t)kh * cap + P + t) * hd, v, sizeof(float) * hd);
                    memcpy(Vl + ((size_t)kh * cap + P + t) * hd, qkv + (size_t)t * QKV + QS + KS + (size_t)kh * hd,
                           sizeof(float) * hd);
                }
            }
            /* attention: token t sees positions 0 .. P + t; query head h reads KV head h / G.
             * Round-robin: later tokens have longer contexts, a contiguous split would be uneven. */
#pragma omp for schedule(static, 1)
            for (int i = 0; i < T * H; ++i) {
                const int t = i / H, h = i % H, n = P + t + 1;
                const float *q = qkv + (size_t)t * QKV + (size_t)h * hd;
                const float *kb = Kl + (size_t)(h / G) * cap * hd, *vb = Vl + (size_t)(h / G) * cap * hd;
                float mx = -INFINITY;
                for (int j = 0; j < n; ++j) {
                    const float s = dotf(q, kb + (size_t)j * hd, hd);
                    sc[j] = s;
                    mx = s > mx ? s : mx;
                }
                float den = 0.f;
                for (int j = 0; j < n; ++j) {
                    sc[j] = expf(sc[j] - mx);
                    den += sc[j];
                }
                const float inv = 1.f / den;
                float *o = att + (size_t)t * QS + (size_t)h * hd;
                for (int d = 0; d < hd; ++d) o[d] = 0.f;
                int j = 0;
                for (; j + 4 <= n; j += 4) { /* four keys per pass over o: a quarter of the o loads/stores */
                    const float p0 = sc[j] * inv, p1 = sc[j + 1] * inv, p2 = sc[j + 2] * inv, p3 = sc[j + 3] * inv;
                    const float *v0 = vb + (size_t)j * hd, *v1 = v0 + hd, *v2 = v1 + hd, *v3 = v2 + hd;
                    for (int d = 0; d < hd; ++d) o[d] += p0 * v0[d] + p1 * v1[d] + p2 * v2[d] + p3 * v3[d];
                }
                for (; j < n; ++j) {
                    const float p = sc[j] * inv, *vj = vb + (size_t)j * hd;
                    for (int d = 0; d < hd; ++d) o[d] += p * vj[d];
                }
            }
#pragma omp for schedule(static)
            for (int t = 0; t < T; ++t) sx[t] = quantize_row(att + (size_t)t * QS, xu + (size_t)t * QS, QS);
            qgemm(&L->o, xu, sx, T, x, D, 1);
#pragma omp for schedule(static)
            for (int t = 0; t < T; ++t) {
                rms_norm(x + (size_t)t * D, L->ln2, xn + (size_t)t * D, D, m->eps);
                sx[t] = quantize_row(xn + (size_t)t * D, xu + (size_t)t * D, D);
            }
            qgemm(&L->gate_up, xu, sx, T, gu, 2 * I, 0);
#pragma omp for schedule(static)
            for (int t = 0; t < T; ++t) {
                const float *g = gu + (size_t)t * 2 * I, *u = g + I;
                float *a = act + (size_t)t * I;
                for (int k = 0; k < I; ++k) a[k] = silu(g[k]) * u[k];
                sx[t] = quantize_row(a, xu + (size_t)t * I, I);
            }
            qgemm(&L->down, xu, sx, T, x, D, 1);
        }
#pragma omp for schedule(static)
        for (int t = 0; t < n_out; ++t) {
            const int src = all_logits ? t : T - 1;
            rms_norm(x + (size_t)src * D, m->final_norm, xn + (size_t)t * D, D, m->eps);
            sx[t] = quantize_row(xn + (size_t)t * D, xu + (size_t)t * D, D);
        }
        qgemm(&m->lm_head, xu, sx, n_out, logits, m->vocab, 0);
    }
done:
    free(x);
    free(qkv);
    free(att);
    free(gu);
    free(act);
    free(xn);
    free(xu);
    free(sx);
    free(scores);
    return rc;
}
