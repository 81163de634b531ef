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
 * 2^-f on [0, 1) and ln(1 + e) = e q(e) on [0, 1] are near-minimax polynomials (evaluated in
 * float32: at most 3e-7 relative and 1.3e-7 absolute error, near float32's own rounding), and 2^-n is built from
 * the exponent bits. u is clamped to [-124, 124] as the torch path clamps y below 2^124.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define LN2 0.69314718055994531f
#define UCLAMP 124.0f

/* 2^-f, f in [0, 1): relative error < 3e-7 in float32 */
static inline float exp2_neg_frac(float f)
{
    float p = -0.000938787241f;
    p = p * f + 0.0091886092f;
    p = p * f - 0.0552797206f;
    p = p * f + 0.240172192f;
    p = p * f - 0.693142235f;
    p = p * f + 0.99999994f;
    return p;
}

/* 2^f, f in [0, 1): relative error < 1e-7 in float32 */
static inline float exp2_pos_frac(float f)
{
    float p = 0.00021702236f;
    p = p * f + 0.00124396931f;
    p = p * f + 0.00967884064f;
    p = p * f + 0.0554833412f;
    p = p * f + 0.24022983f;
    p = p * f + 0.693147004f;
    p = p * f + 1.0f;
    return p;
}

/* 2^n for integer-valued n in [-126, 127], from the exponent bits */
static inline float pow2i(float n)
{
    int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return s;
}

/* ln(1 + e) = e q(e), e in [0, 1]: absolute error < 1.4e-7 in float32 */
static inline float ln1p_unit(float e)
{
    float q = -0.00645230664f;
    q = q * e + 0.0360833108f;
    q = q * e - 0.0953205526f;
    q = q * e + 0.167646244f;
    q = q * e - 0.240730017f;
    q = q * e + 0.331798077f;
    q = q * e - 0.499874026f;
    q = q * e + 0.999996424f;
    return e * q;
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
        __m512 p = _mm512_set1_ps(-0.000938787241f);
        p = _mm512_fmadd_ps(p, fr, _mm512_set1_ps(0.0091886092f));
        p = _mm512_fmadd_ps(p, fr, _mm512_set1_ps(-0.0552797206f));
        p = _mm512_fmadd_ps(p, fr, _mm512_set1_ps(0.240172192f));
        p = _mm512_fmadd_ps(p, fr, _mm512_set1_ps(-0.693142235f));
        p = _mm512_fmadd_ps(p, fr, _mm512_set1_ps(0.99999994f));
        const __m512 e = _mm512_scalef_ps(p, _mm512_sub_ps(_mm512_setzero_ps(), n)); /* 2^-a */
        __m512 l = _mm512_set1_ps(-0.00645230664f);
        l = _mm512_fmadd_ps(l, e, _mm512_set1_ps(0.0360833108f));
        l = _mm512_fmadd_ps(l, e, _mm512_set1_ps(-0.0953205526f));
        l = _mm512_fmadd_ps(l, e, _mm512_set1_ps(0.167646244f));
        l = _mm512_fmadd_ps(l, e, _mm512_set1_ps(-0.240730017f));
        l = _mm512_fmadd_ps(l, e, _mm512_set1_ps(0.331798077f));
        l = _mm512_fmadd_ps(l, e, _mm512_set1_ps(-0.499874026f));
        l = _mm512_fmadd_ps(l, e, _mm512_set1_ps(0.999996424f));
        l = _mm512_mul_ps(l, e); /* ln(1 + e) */
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
    for (int t = 0; t < N; ++t) {
        const size_t o = (size_t)t * F;
        const float *zn = z_new + (size_t)t * D;
        float e_new = row_energy(u + o, Q + o, F);
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
                row_exp2_scaled(u + o, scale + o, vs_out + o, F);
            else if (vs_prev != vs_out)
                memcpy(vs_out + o, vs_prev + o, sizeof(float) * (size_t)F);
        }
        if (energy_sum) energy_sum[t] += energy[t];
        if (accepted) accepted[t] = (uint8_t)acc;
    }
}

/* M-step sums for the W and H updates (nmf.m_step), R samples of speech variance vs
 * [R, N, F]: with V_r = wh + g_t vs_r,
 *   A = p sum_r V_r^-2,  Bm = sum_r V_r^-1   (p already masked; rows with mask 0 get 0). */
void reavise_nmf_sums_ab(int R, int N, int F, const float *vs, const float *wh,
                         const float *g, const float *p, const float *mask, float *A,
                         float *Bm)
{
    const size_t stride = (size_t)N * F;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; ++t) {
        const size_t o = (size_t)t * F;
        float *a = A + o, *b = Bm + o;
        const float *w = wh + o, gt = g[t], m = mask[t];
        for (int f = 0; f < F; ++f) a[f] = b[f] = 0.0f;
        for (int r = 0; r < R; ++r) {
            const float *v = vs + r * stride + o;
#pragma omp simd
            for (int f = 0; f < F; ++f) {
                float inv = 1.0f / (w[f] + gt * v[f]);
                a[f] += inv * inv;
                b[f] += inv;
            }
        }
        const float *pp = p + o;
#pragma omp simd
        for (int f = 0; f < F; ++f) {
            a[f] *= pp[f];
            b[f] *= m;
        }
    }
}

/* M-step sums for the gain update: num_t = sum_f p sum_r vs_r V_r^-2,
 * den_t = sum_f sum_r vs_r V_r^-1 (one pass over the samples, per-bin accumulation in
 * the order of the torch path). scratch: [nthreads-independent] 2 F floats per frame. */
void reavise_nmf_sums_g(int R, int N, int F, const float *vs, const float *wh,
                        const float *g, const float *p, float *num, float *den,
                        float *scratch)
{
    const size_t stride = (size_t)N * F;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; ++t) {
        const size_t o = (size_t)t * F;
        float *nv = scratch + 2 * o, *dv = nv + F;
        const float *w = wh + o, gt = g[t];
        for (int f = 0; f < F; ++f) nv[f] = dv[f] = 0.0f;
        for (int r = 0; r < R; ++r) {
            const float *v = vs + r * stride + o;
#pragma omp simd
            for (int f = 0; f < F; ++f) {
                float inv = 1.0f / (w[f] + gt * v[f]);
                float vi = v[f] * inv;
                dv[f] += vi;
                nv[f] += vi * inv;
            }
        }
        const float *pp = p + o;
        float sn = 0.0f, sd = 0.0f;
#pragma omp simd reduction(+ : sn, sd)
        for (int f = 0; f < F; ++f) {
            sn += nv[f] * pp[f];
            sd += dv[f];
        }
        num[t] = sn;
        den[t] = sd;
    }
}
