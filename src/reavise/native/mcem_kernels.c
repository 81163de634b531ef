/* Fused CPU kernels for MCEM's inner loop (reavise.native builds and loads this file).
 *
 * MCEM spends its time, besides the decoder's matrix products, on per-bin work: for each
 * proposal the frame energy  E_t = sum_f [ln(1 + y_f) + Q_f / (1 + y_f)]  with y = 2^u, then the
 * Metropolis-Hastings accept/reject and the bookkeeping of the kept samples, and in the M-step
 * the sums over samples of 1/V and 1/V^2. Torch runs each of these as several passes over
 * [T, F]; here each is one pass per frame, vectorised over bins (#pragma omp simd) and split
 * over frames across the OpenMP threads torch already runs (the library links libgomp.so.1,
 * which resolves to torch's own copy once torch is loaded).
 *
 * Numerics. With a = |u| and e = 2^-a in (0, 1]:
 *   ln(1 + 2^u)   = ln2 max(u, 0) + ln(1 + e)          (softplus; no overflow for any u)
 *   1 / (1 + 2^u) = e / (1 + e) if u > 0 else 1 / (1 + e)
 * 2^-f on [0, 1) and ln(1 + e) = e q(e) on [0, 1] are near-minimax polynomials (in float32:
 * at most 3e-7 relative and 1.4e-7 absolute error, near float32's own rounding), and 2^-n is
 * built from the exponent bits. u is clamped to [-124, 124] as the torch path clamps y below 2^124.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <omp.h>
#include <stdlib.h>

#define LN2 0.69314718055994531f
#define UCLAMP 124.0f

/* Polynomial coefficients, highest degree first (near-minimax fits, float32 rounding):
 * 2^-f and 2^f on [0, 1) (relative error < 3e-7 and < 1e-7 in float32), and q with
 * ln(1 + e) = e q(e) on [0, 1] (absolute error < 1.4e-7 in float32). */
static const float EXP2_NEG[6] = {-0.000938787241f, 0.0091886092f, -0.0552797206f,
                                  0.240172192f, -0.693142235f, 0.99999994f};
static const float EXP2_POS[7] = {0.00021702236f, 0.00124396931f, 0.00967884064f,
                                  0.0554833412f, 0.24022983f, 0.693147004f, 1.0f};
static const float LN1P_Q[8] = {-0.00645230664f, 0.0360833108f, -0.0953205526f, 0.167646244f,
                                -0.240730017f, 0.331798077f, -0.499874026f, 0.999996424f};

static inline float horner(const float *c, int n, float x)
{
    float p = c[0];
    for (int i = 1; i < n; ++i) p = p * x + c[i];
    return p;
}

static inline float exp2_neg_frac(float f) { return horner(EXP2_NEG, 6, f); }
static inline float exp2_pos_frac(float f) { return horner(EXP2_POS, 7, f); }
static inline float ln1p_unit(float e) { return e * horner(LN1P_Q, 8, e); }

/* 2^n for integer-valued n in [-126, 127], from the exponent bits */
static inline float pow2i(float n)
{
    int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return s;
}

static inline float clamp_u(float v)
{
    v = v > UCLAMP ? UCLAMP : v;
    return v < -UCLAMP ? -UCLAMP : v;
}

#ifdef __AVX512F__
#include <immintrin.h>

/* 1 / d: the 14-bit estimate refined by one Newton step, r (2 - d r): relative error ~4e-9,
 * at a fraction of vdivps's cost */
static inline __m512 recip16(__m512 d)
{
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

static inline __mmask16 tail_mask(int left) { return left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1); }

static inline __m512 horner16(const float *c, int n, __m512 x)
{
    __m512 p = _mm512_set1_ps(c[0]);
    for (int i = 1; i < n; ++i) p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(c[i]));
    return p;
}

/* sum_f ln(1 + 2^u_f) + Q_f / (1 + 2^u_f) for one frame (16 bins per instruction) */
static float row_energy(const float *restrict u, const float *restrict Q, int F)
{
    const __m512 hi = _mm512_set1_ps(UCLAMP), lo = _mm512_set1_ps(-UCLAMP);
    const __m512 one = _mm512_set1_ps(1.0f), ln2 = _mm512_set1_ps(LN2);
    __m512 acc = _mm512_setzero_ps();
    for (int f = 0; f < F; f += 16) {
        const __mmask16 k = tail_mask(F - f);
        __m512 v = _mm512_maskz_loadu_ps(k, u + f);
        const __m512 q = _mm512_maskz_loadu_ps(k, Q + f);
        /* min/max return their second operand for a NaN: a NaN u stays NaN (and rejects) */
        v = _mm512_max_ps(lo, _mm512_min_ps(hi, v));
        const __m512 a = _mm512_abs_ps(v);
        const __m512 n = _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        const __m512 fr = _mm512_sub_ps(a, n);
        const __m512 p = horner16(EXP2_NEG, 6, fr);
        const __m512 e = _mm512_scalef_ps(p, _mm512_sub_ps(_mm512_setzero_ps(), n)); /* 2^-a */
        __m512 l = _mm512_mul_ps(horner16(LN1P_Q, 8, e), e); /* ln(1 + e) */
        const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
        __m512 r = recip16(_mm512_add_ps(one, e));
        r = _mm512_mask_mul_ps(r, pos, r, e);                   /* 1 / (1 + 2^u) */
        l = _mm512_mask3_fmadd_ps(v, ln2, l, pos);              /* + ln2 u where u > 0 */
        const __m512 term = _mm512_fmadd_ps(q, r, l);
        acc = _mm512_mask_add_ps(acc, k, acc, term);
    }
    return _mm512_reduce_add_ps(acc);
}
#else
/* sum_f ln(1 + 2^u_f) + Q_f / (1 + 2^u_f) for one frame */
static float row_energy(const float *restrict u, const float *restrict Q, int F)
{
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int f = 0; f < F; ++f) {
        float v = clamp_u(u[f]);
        float a = fabsf(v);
        float n = floorf(a);
        float e = exp2_neg_frac(a - n) * pow2i(-n);
        float inv = 1.0f / (1.0f + e);
        float r = v > 0.0f ? e * inv : inv;
        float sp = v > 0.0f ? v * LN2 : 0.0f;
        acc += sp + ln1p_unit(e) + Q[f] * r;
    }
    return acc;
}

#endif

/* out_f = 2^u_f * scale_f (speech variance sigma2 = y WH / g when scale = WH / g) */
static void row_exp2_scaled(const float *restrict u, const float *restrict scale,
                            float *restrict out, int F)
{
#pragma omp simd
    for (int f = 0; f < F; ++f) {
        float v = clamp_u(u[f]);
        float n = floorf(v);
        out[f] = exp2_pos_frac(v - n) * pow2i(n) * scale[f];
    }
}

/* Energies E_t of N frames (rows of u, Q: [N, F]); optionally their speech variances
 * vs[t] = 2^u_t * scale_t (vs, scale may be NULL). */
void reavise_energy(int N, int F, const float *u, const float *Q, const float *scale,
                    float *energy, float *vs)
{
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; ++t) {
        const size_t o = (size_t)t * F;
        energy[t] = row_energy(u + o, Q + o, F);
        if (vs) row_exp2_scaled(u + o, scale + o, vs + o, F);
    }
}

/* The MH step of frame t (see reavise_mh_step), given its proposal's log2 y row u. */
static inline void mh_row(int t, int F, int D, const float *restrict u, const float *Q,
                          const float *prior_new, float gamma, const float *log_u,
                          const float *z_new, float *z, float *logp, float *energy,
                          const float *scale, const float *vs_prev, float *vs_out,
                          float *energy_sum, uint8_t *accepted)
{
    const size_t o = (size_t)t * F;
    const float *zn = z_new + (size_t)t * D;
    float e_new = row_energy(u, Q + o, F);
    float lp_prior;
    if (prior_new) {
        lp_prior = prior_new[t];
    } else {
        float s = 0.0f;
        for (int d = 0; d < D; ++d) s += zn[d] * zn[d];
        lp_prior = -0.5f * gamma * s;
    }
    float lp_new = lp_prior - e_new;
    int acc = log_u[t] < lp_new - logp[t];
    if (acc) {
        logp[t] = lp_new;
        energy[t] = e_new;
        memcpy(z + (size_t)t * D, zn, sizeof(float) * (size_t)D);
    }
    if (vs_out) {
        if (acc)
            row_exp2_scaled(u, scale + o, vs_out + o, F);
        else if (vs_prev != vs_out)
            memcpy(vs_out + o, vs_prev + o, sizeof(float) * (size_t)F);
    }
    if (energy_sum) energy_sum[t] += energy[t];
    if (accepted) accepted[t] = (uint8_t)acc;
}

/* One Metropolis-Hastings step for N independent frames (latent dimension D).
 *
 * u: log2 y of the proposals z_new [N, F]; prior_new: log p(z_new|v) (times the prior weight)
 * [N], or NULL for the standard normal prior, computed here as -gamma |z_new|^2 / 2.
 * Frame t accepts when log_u[t] < (prior_new - E_new) - logp[t] (a NaN rejects), and then
 * takes z_new[t], logp and energy. In the kept phase (vs_out != NULL) the state's speech
 * variance is written: 2^u * scale for an accepted frame, the row of vs_prev otherwise
 * (vs_prev == vs_out leaves it). energy_sum (NULL in burn-in) accumulates the state's energy.
 * accepted (may be NULL) receives 0/1 per frame. */
void reavise_mh_step(int N, int F, int D, const float *u, const float *Q,
                     const float *prior_new, float gamma, const float *log_u,
                     const float *z_new, float *z, float *logp, float *energy,
                     const float *scale, const float *vs_prev, float *vs_out,
                     float *energy_sum, uint8_t *accepted)
{
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; ++t)
        mh_row(t, F, D, u + (size_t)t * F, Q, prior_new, gamma, log_u, z_new, z, logp, energy,
               scale, vs_prev, vs_out, energy_sum, accepted);
}

/* ---- the decoder's output layer as exact int8 products (MCEM with a tanh-MLP decoder) ----
 * The hidden activation t in [-1, 1] and each output column of the last weight matrix are
 * fixed-point numbers of QS = 127 * 128 steps (about 14 bits), split in two int8 limbs:
 * T = 128 hi + lo with hi in [-127, 127], lo in [-64, 64]. Then
 *   T W = 2^14 hi.W_hi + 2^7 (hi.W_lo + lo.W_hi) + lo.W_lo,
 * whose first two terms come from two int8 GEMMs with exact int32 sums (torch._int_mm:
 * P1 = hi W_hi, P2 = [hi lo] [W_lo; W_hi]); the dropped last term is below the rounding of
 * the operands. u = (128 P1 + P2) cs_f rs_t + base_tf, where cs folds 2^7 / (QS scale_f) and
 * log2 e, rs_t is the frame's activation scale (1 for tanh), and base the output bias and the
 * offset log2(g / WH). */
#define QS 16256.0f

static inline float tanh_fast(float x)
{
    /* tanh |x| = (1 - e) / (1 + e), e = 2^(-2 log2(e) |x|); tanh = 1 in float32 past 9 */
    float a = fabsf(x);
    a = a < 9.0f ? a : 9.0f;
    float s = 2.8853900817779268f * a; /* 2 log2 e |x| */
    float n = floorf(s);
    float e = exp2_neg_frac(s - n) * pow2i(-n);
    float th = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -th : th;
}

/* The limbs of one row x [H] at scale s (x s rounded, within +-QS): r1 = hi, r2 = [hi, lo]. */
static inline void quantize_row(int H, const float *restrict x, float s, int8_t *restrict r1,
                                int8_t *restrict r2)
{
#pragma omp simd
    for (int k = 0; k < H; ++k) {
        float T = rintf(x[k] * s);
        T = fminf(fmaxf(T, -QS), QS);
        float hi = rintf(T * (1.0f / 128.0f));
        float lo = T - 128.0f * hi;
        r1[k] = (int8_t)hi;
        r2[k] = (int8_t)hi;
        r2[H + k] = (int8_t)lo;
    }
}

/* For each frame: z_new = z (+ eps), t = tanh(z_new W1 + b1) [H], then the int8 limbs of t:
 * a1 = hi [N, H], a2 = [hi, lo] [N, 2 H]. W1t is [D, H]; z_new may be NULL (eps NULL too).
 * b1 is [bias_rows, H]: row t takes bias row t % bias_rows (1: one bias for every frame, the
 * A-VAE; B*T: a per-frame bias, an AV prior's lips folded in, repeated over leading samples). */
void reavise_hidden_q(int N, int D, int H, const float *z, const float *eps, const float *W1t,
                      const float *b1, int bias_rows, float *z_new, int8_t *a1, int8_t *a2)
{
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; ++t) {
        float zt[D], pre[H];
        for (int d = 0; d < D; ++d) zt[d] = z[(size_t)t * D + d] + (eps ? eps[(size_t)t * D + d] : 0.0f);
        if (z_new) memcpy(z_new + (size_t)t * D, zt, sizeof(float) * (size_t)D);
        memcpy(pre, b1 + (size_t)(t % bias_rows) * H, sizeof(float) * (size_t)H);
        for (int d = 0; d < D; ++d) {
            const float zd = zt[d];
            const float *restrict w = W1t + (size_t)d * H;
#pragma omp simd
            for (int h = 0; h < H; ++h) pre[h] += zd * w[h];
        }
#pragma omp simd
        for (int h = 0; h < H; ++h) pre[h] = tanh_fast(pre[h]);
        quantize_row(H, pre, QS, a1 + (size_t)t * H, a2 + (size_t)t * 2 * H);
    }
}

/* The same limbs for any hidden activation h [N, H], with a scale per frame: the row's
 * max |h| maps to QS, and rowscale[t] = max |h| (1 for tanh rows, whose scale is fixed). A row
 * with a NaN/inf gets zero limbs and rowscale NaN, so its u is NaN and the proposal rejects. */
void reavise_quantize_rows(int N, int H, const float *h, int8_t *a1, int8_t *a2,
                           float *rowscale)
{
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; ++t) {
        const float *restrict x = h + (size_t)t * H;
        int8_t *restrict r1 = a1 + (size_t)t * H, *restrict r2 = a2 + (size_t)t * 2 * H;
        float m = 0.0f;
        for (int k = 0; k < H; ++k) m = fmaxf(m, fabsf(x[k]));
        if (!(m <= 3.0e38f)) { /* NaN or inf */
            memset(r1, 0, (size_t)H);
            memset(r2, 0, 2 * (size_t)H);
            rowscale[t] = NAN;
            continue;
        }
        if (m == 0.0f) m = 1.0f;
        rowscale[t] = m;
        quantize_row(H, x, QS / m, r1, r2);
    }
}

static inline void dequant_row(int F, const int32_t *restrict p1, const int32_t *restrict p2,
                               const float *restrict cs, float rs, const float *restrict base,
                               float *restrict u)
{
#pragma omp simd
    for (int f = 0; f < F; ++f) u[f] = (float)(p1[f] * 128 + p2[f]) * (cs[f] * rs) + base[f];
}

/* u [N, F] from the int32 products P1, P2 [N, Fp] (see above); rowscale NULL means 1. */
void reavise_dequant(int N, int F, int Fp, const int32_t *P1, const int32_t *P2,
                     const float *cs, const float *rowscale, const float *base, float *u)
{
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; ++t)
        dequant_row(F, P1 + (size_t)t * Fp, P2 + (size_t)t * Fp, cs,
                    rowscale ? rowscale[t] : 1.0f, base + (size_t)t * F, u + (size_t)t * F);
}

/* reavise_mh_step with u made on the fly, row by row, from the int32 products. */
void reavise_mh_step_q(int N, int F, int Fp, int D, const int32_t *P1, const int32_t *P2,
                       const float *cs, const float *rowscale, const float *base, const float *Q,
                       const float *prior_new, float gamma, const float *log_u,
                       const float *z_new, float *z, float *logp, float *energy,
                       const float *scale, const float *vs_prev, float *vs_out,
                       float *energy_sum, uint8_t *accepted)
{
#pragma omp parallel
    {
        float u[F];
#pragma omp for schedule(static)
        for (int t = 0; t < N; ++t) {
            dequant_row(F, P1 + (size_t)t * Fp, P2 + (size_t)t * Fp, cs,
                        rowscale ? rowscale[t] : 1.0f, base + (size_t)t * F, u);
            mh_row(t, F, D, u, Q, prior_new, gamma, log_u, z_new, z, logp, energy, scale,
                   vs_prev, vs_out, energy_sum, accepted);
        }
    }
}

/* ---- the whole NMF M-step of one utterance (nmf.m_step), Leglaive et al. 2018 eq. 15-17 ----
 * T frames, F bins, rank K, R samples vs (sample r of this utterance at vs + r sstride,
 * each [T, F]); p [T, F] is the masked power, mask [T].
 * Updates W [K, F], then H [T, K] (with the new W), then g [T] (with the new W H), in place.
 * Each phase is one pass per frame: the frame's row of W H is rebuilt from H and W (K axpys)
 * and the sums over samples stay in L1 instead of [T, F] buffers. Returns 0, or -1 when
 * out of memory (nothing updated). */
#define NMF_EPS 1e-10f

static inline void wh_row(int K, int F, const float *restrict h, const float *restrict W,
                          float *restrict out)
{
    for (int f = 0; f < F; ++f) out[f] = 0.0f;
    for (int k = 0; k < K; ++k) {
        const float hk = h[k];
        const float *restrict w = W + (size_t)k * F;
#pragma omp simd
        for (int f = 0; f < F; ++f) out[f] += hk * w[f];
    }
}

/* Per bin of one frame, over the R samples with V_r = wh + g vs_r and x_r = 1 / V_r
 * (weighted = 0) or vs_r / V_r (weighted = 1): s1 = sum_r x_r / V_r, s2 = sum_r x_r. */
static inline void sample_sums(int R, int F, size_t stride, const float *restrict vs,
                               const float *restrict wh, float gt, int weighted,
                               float *restrict s1, float *restrict s2)
{
#ifdef __AVX512F__
    const __m512 g16 = _mm512_set1_ps(gt);
    for (int f = 0; f < F; f += 16) {
        const __mmask16 k = tail_mask(F - f);
        const __m512 w = _mm512_maskz_loadu_ps(k, wh + f);
        __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
        for (int r = 0; r < R; ++r) {
            const __m512 v = _mm512_maskz_loadu_ps(k, vs + r * stride + f);
            const __m512 inv = recip16(_mm512_fmadd_ps(g16, v, w));
            const __m512 x = weighted ? _mm512_mul_ps(v, inv) : inv;
            a = _mm512_fmadd_ps(x, inv, a);
            b = _mm512_add_ps(b, x);
        }
        _mm512_mask_storeu_ps(s1 + f, k, a); /* the tail lanes (1/0 = inf) are not stored */
        _mm512_mask_storeu_ps(s2 + f, k, b);
    }
#else
    for (int f = 0; f < F; ++f) s1[f] = s2[f] = 0.0f;
    for (int r = 0; r < R; ++r) {
        const float *restrict v = vs + r * stride;
#pragma omp simd
        for (int f = 0; f < F; ++f) {
            float inv = 1.0f / (wh[f] + gt * v[f]);
            float x = weighted ? v[f] * inv : inv;
            s1[f] += x * inv;
            s2[f] += x;
        }
    }
#endif
}

/* a = p sum_r V_r^-2, b = m sum_r V_r^-1 for one frame (the W and H updates) */
static inline void ab_row(int R, int F, size_t stride, const float *restrict vs,
                          const float *restrict wh, float gt, const float *restrict p, float m,
                          float *restrict a, float *restrict b)
{
    sample_sums(R, F, stride, vs, wh, gt, 0, a, b);
#pragma omp simd
    for (int f = 0; f < F; ++f) {
        a[f] *= p[f];
        b[f] *= m;
    }
}

/* (sum_f p sum_r vs_r V_r^-2, sum_f sum_r vs_r V_r^-1) for one frame: the gain update's sums;
 * nv, dv: F floats of scratch each */
static inline void g_sums(int R, int F, size_t stride, const float *restrict vs,
                          const float *restrict wh, float gt, const float *restrict p,
                          float *restrict nv, float *restrict dv, float *num, float *den)
{
    sample_sums(R, F, stride, vs, wh, gt, 1, nv, dv);
    float sn = 0.0f, sd = 0.0f;
#pragma omp simd reduction(+ : sn, sd)
    for (int f = 0; f < F; ++f) {
        sn += nv[f] * p[f];
        sd += dv[f];
    }
    *num = sn;
    *den = sd;
}

static inline float mm_factor(float num, float den)
{
    float x = sqrtf(num / (den > NMF_EPS ? den : NMF_EPS));
    return x > NMF_EPS ? x : NMF_EPS;
}

int reavise_nmf_step(int R, int T, int T_sum, int F, int K, const float *vs, long sstride,
                     const float *p, const float *mask, float *W, float *H, float *g)
{
    const size_t stride = (size_t)sstride, KF = (size_t)K * F;
    const int nthreads = omp_get_max_threads();
    /* per thread: partial H^T A and H^T B (K F each), and three rows of F */
    const size_t per = 2 * KF + 3 * (size_t)F;
    float *scratch = calloc((size_t)nthreads * per, sizeof(float));
    if (!scratch) return -1;
    float *num = scratch;  /* thread id's partial sums at num + id * per, den right after */

    /* W <- W sqrt((H^T A) / (H^T B)) */
#pragma omp parallel
    {
        const int id = omp_get_thread_num();
        float *restrict nu = scratch + (size_t)id * per, *restrict de = nu + KF;
        float *wh = de + KF, *a = wh + F, *b = a + F;
        /* over the first T_sum frames only (the utterance's own; the rest are padding, whose
           terms are zero): the threads' split of this sum, and so its rounding, is then the
           one the utterance gets alone, whatever it is batched with */
#pragma omp for schedule(static)
        for (int t = 0; t < T_sum; ++t) {
            const float *h = H + (size_t)t * K;
            wh_row(K, F, h, W, wh);
            ab_row(R, F, stride, vs + (size_t)t * F, wh, g[t], p + (size_t)t * F, mask[t], a, b);
            for (int k = 0; k < K; ++k) {
                const float hk = h[k];
                float *restrict nk = nu + (size_t)k * F, *restrict dk = de + (size_t)k * F;
#pragma omp simd
                for (int f = 0; f < F; ++f) {
                    nk[f] += hk * a[f];
                    dk[f] += hk * b[f];
                }
            }
        }
    }
    float *den = num + KF;
    for (int id = 1; id < nthreads; ++id)
        for (size_t i = 0; i < KF; ++i) {
            num[i] += scratch[(size_t)id * per + i];
            den[i] += scratch[(size_t)id * per + KF + i];
        }
    for (size_t i = 0; i < KF; ++i) W[i] *= mm_factor(num[i], den[i]);

    /* H <- H sqrt((A W^T) / (B W^T)) with the new W, then g with the new W H */
#pragma omp parallel
    {
        float *wh = scratch + (size_t)omp_get_thread_num() * per + 2 * KF, *a = wh + F, *b = a + F;
#pragma omp for schedule(static)
        for (int t = 0; t < T; ++t) {
            float *h = H + (size_t)t * K;
            const float *pt = p + (size_t)t * F, *vt = vs + (size_t)t * F;
            wh_row(K, F, h, W, wh);
            ab_row(R, F, stride, vt, wh, g[t], pt, mask[t], a, b);
            for (int k = 0; k < K; ++k) {
                const float *restrict w = W + (size_t)k * F;
                float sn = 0.0f, sd = 0.0f;
#pragma omp simd reduction(+ : sn, sd)
                for (int f = 0; f < F; ++f) {
                    sn += a[f] * w[f];
                    sd += b[f] * w[f];
                }
                h[k] *= mm_factor(sn, sd);
            }
            /* g_t <- g_t sqrt(sum_f p sum_r vs V^-2 / sum_f sum_r vs V^-1) (1 for padding) */
            wh_row(K, F, h, W, wh);
            float sn, sd;
            g_sums(R, F, stride, vt, wh, g[t], pt, a, b, &sn, &sd);
            if (mask[t] > 0.0f) g[t] *= mm_factor(sn, sd * mask[t]);
        }
    }
    free(scratch);
    return 0;
}
