/* Vectorisable exp, cos and sin for double and float.
 *
 * libm's scalar exp/cos are opaque calls, so a loop calling them never vectorises.  These are
 * small branch-free inline functions (range reduction + polynomial) that GCC and clang turn into
 * SIMD code inside a plain `for` loop, so a block loop "distance -> exp -> accumulate" runs on
 * the full vector width of the clone it is compiled into (see MF_CLONES).
 *
 * Accuracy (checked in tests/test_vecmath.py against numpy over the whole range):
 *   mf_exp / mf_expf:  a few ulp; below -745.2 (-103.98 for float) the result is exactly 0 (no
 *                      NaN, gradual underflow through the subnormals); above 709.8 (88.7)
 *                      it is inf.
 *   mf_cos / mf_sin:   a few ulp for |x| <= MF_TRIG_LIMIT (2^20 for double, 4096 for float).
 *                      Larger arguments need the exact reduction of libm: the block helpers
 *                      mf_cos_block* fall back to cos/cosf for those entries.
 * Inputs must not be NaN (callers validate their inputs).
 *
 * Method.  exp: x = n ln2 + r with |r| <= ln2/2 (Cody-Waite, ln2 split so n*LN2_HI is exact),
 * Taylor polynomial of e^r, then scaling by 2^n built from the exponent bits; 2^n is applied
 * as two factors 2^(n/2) 2^(n - n/2) so that subnormal results are rounded once and correctly.
 * cos/sin: x = n pi/2 + r with |r| <= pi/4 (three-part Cody-Waite), Taylor polynomials of cos r
 * and sin r, quadrant picked with integer masks (no branches).  The integer n is read from the
 * low mantissa bits of x/c + 1.5*2^52 (the "shifter" trick), which vectorises on AVX2.
 */
#ifndef METAFAST_VECMATH_H
#define METAFAST_VECMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define MF_INLINE static inline __attribute__((always_inline))
#else
#define MF_INLINE static inline
#endif

/* Function multi-versioning: one binary, the best SIMD clone picked at load time.  Only for
 * GCC on x86-64 (clang's target_clones syntax differs); elsewhere a plain function. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(METAFAST_NO_CLONES)
#if __GNUC__ >= 12   /* ISA levels: dispatch on CPU features (works in VMs with generic models) */
#define MF_CLONES \
    __attribute__((unused, target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else                /* older GCC: dispatch on the CPU model */
#define MF_CLONES \
    __attribute__((unused, target_clones("default", "arch=haswell", "arch=skylake-avx512")))
#endif
#elif defined(__GNUC__)
#define MF_CLONES __attribute__((unused))
#else
#define MF_CLONES
#endif

#define MF_TRIG_LIMIT_D 1048576.0
#define MF_TRIG_LIMIT_F 4096.0f

MF_INLINE int64_t mf_bits_d(double x) { int64_t i; memcpy(&i, &x, sizeof i); return i; }
MF_INLINE double mf_from_bits_d(int64_t i) { double x; memcpy(&x, &i, sizeof x); return x; }
MF_INLINE int32_t mf_bits_f(float x) { int32_t i; memcpy(&i, &x, sizeof i); return i; }
MF_INLINE float mf_from_bits_f(int32_t i) { float x; memcpy(&x, &i, sizeof x); return x; }

/* ------------------------------------------------------------------------------ exp, double */
MF_INLINE double mf_exp(double x)
{
    const double shifter = 0x1.8p52;
    const double log2e = 0x1.71547652b82fep0;
    const double ln2_hi = 0x1.62e42fefa2000p-1;   /* 40 significant bits: n * ln2_hi exact */
    const double ln2_lo = 0x1.9ef35793c7673p-41;
    /* one symmetric clamp (two selects in a row stop GCC vectorising for AVX2): e^-746 rounds
     * to 0 and e^746 = 2^538 * 2^538 * p overflows to inf, both exponents still in range */
    x = fabs(x) > 746.0 ? copysign(746.0, x) : x;
    double t = x * log2e + shifter;
    int64_t n = mf_bits_d(t) - mf_bits_d(shifter);
    double nd = t - shifter;
    double r = (x - nd * ln2_hi) - nd * ln2_lo;
    double p = 1.0 / 6227020800.0;                 /* Taylor series of e^r to degree 13 */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^n = 2^n1 * 2^n2 with n1 ~ n/2, both normal; n1 by the shifter again, because AVX2 has
     * no 64-bit arithmetic shift and `n >> 1` would stop the loop from vectorising there */
    int64_t n1 = mf_bits_d(nd * 0.5 + shifter) - mf_bits_d(shifter);
    int64_t n2 = n - n1;
    double s1 = mf_from_bits_d((n1 + 1023) << 52);
    double s2 = mf_from_bits_d((n2 + 1023) << 52);
    return (p * s1) * s2;
}

/* ------------------------------------------------------------------------------- exp, float */
MF_INLINE float mf_expf(float x)
{
    const float shifter = 0x1.8p23f;
    const float log2e = 0x1.715476p0f;
    const float ln2_hi = 0x1.62e4p-1f;             /* 16 significant bits: n * ln2_hi exact */
    const float ln2_lo = 0x1.7f7d1cp-20f;
    x = fabsf(x) > 104.0f ? copysignf(104.0f, x) : x;   /* e^-104 -> 0, e^104 -> inf */
    float t = x * log2e + shifter;
    int32_t n = mf_bits_f(t) - mf_bits_f(shifter);
    float nd = t - shifter;
    float r = (x - nd * ln2_hi) - nd * ln2_lo;
    float p = 1.0f / 5040.0f;                      /* Taylor series of e^r to degree 7 */
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t n1 = n >> 1;
    int32_t n2 = n - n1;
    float s1 = mf_from_bits_f((n1 + 127) << 23);
    float s2 = mf_from_bits_f((n2 + 127) << 23);
    return (p * s1) * s2;
}

/* ----------------------------------------------------------------------- cos / sin, double */
/* cos(x + shift * pi/2) for |x| <= MF_TRIG_LIMIT_D; shift = 0 gives cos, shift = 3 gives sin. */
MF_INLINE double mf_cos_shifted(double x, int64_t shift)
{
    const double shifter = 0x1.8p52;
    const double two_over_pi = 0x1.45f306dc9c883p-1;
    const double p1 = 0x1.921fb54000000p+0;       /* pi/2 in three parts, 30 + 30 + 53 bits */
    const double p2 = 0x1.10b4611800000p-30;
    const double p3 = 0x1.313198a2e0370p-61;
    double t = x * two_over_pi + shifter;
    int64_t q = mf_bits_d(t) - mf_bits_d(shifter) + shift;
    double nd = t - shifter;
    double r = ((x - nd * p1) - nd * p2) - nd * p3;
    double r2 = r * r;
    double c = 1.0 / 20922789888000.0;             /* cos r: Taylor to degree 16 */
    c = c * r2 - 1.0 / 87178291200.0;
    c = c * r2 + 1.0 / 479001600.0;
    c = c * r2 - 1.0 / 3628800.0;
    c = c * r2 + 1.0 / 40320.0;
    c = c * r2 - 1.0 / 720.0;
    c = c * r2 + 1.0 / 24.0;
    c = c * r2 - 0.5;
    c = c * r2 + 1.0;
    double s = 1.0 / 355687428096000.0;            /* sin r: Taylor to degree 17 */
    s = s * r2 - 1.0 / 1307674368000.0;
    s = s * r2 + 1.0 / 6227020800.0;
    s = s * r2 - 1.0 / 39916800.0;
    s = s * r2 + 1.0 / 362880.0;
    s = s * r2 - 1.0 / 5040.0;
    s = s * r2 + 1.0 / 120.0;
    s = s * r2 - 1.0 / 6.0;
    s = (s * r2) * r + r;
    /* cos(r + q pi/2) = c, -s, -c, s for q mod 4 = 0, 1, 2, 3 */
    int64_t odd = -(q & 1);                        /* all ones for odd q: select by bit masks */
    double v = mf_from_bits_d((mf_bits_d(c) & ~odd) | (mf_bits_d(s) & odd));
    int64_t sign = (int64_t)((uint64_t)((q + 1) & 2) << 62);  /* sign bit for q mod 4 in {1,2} */
    return mf_from_bits_d(mf_bits_d(v) ^ sign);
}

MF_INLINE double mf_cos(double x) { return mf_cos_shifted(x, 0); }
MF_INLINE double mf_sin(double x) { return mf_cos_shifted(x, 3); }

/* ------------------------------------------------------------------------ cos / sin, float */
MF_INLINE float mf_cos_shiftedf(float x, int32_t shift)
{
    const float shifter = 0x1.8p23f;
    const float two_over_pi = 0x1.45f306p-1f;
    const float p1 = 0x1.92p+0f;                   /* pi/2 in three parts, 11 + 11 + 24 bits */
    const float p2 = 0x1.fb4p-12f;
    const float p3 = 0x1.4442d2p-24f;
    float t = x * two_over_pi + shifter;
    int32_t q = mf_bits_f(t) - mf_bits_f(shifter) + shift;
    float nd = t - shifter;
    float r = ((x - nd * p1) - nd * p2) - nd * p3;
    float r2 = r * r;
    float c = 1.0f / 40320.0f;                     /* cos r: Taylor to degree 8 */
    c = c * r2 - 1.0f / 720.0f;
    c = c * r2 + 1.0f / 24.0f;
    c = c * r2 - 0.5f;
    c = c * r2 + 1.0f;
    float s = 1.0f / 362880.0f;                    /* sin r: Taylor to degree 9 */
    s = s * r2 - 1.0f / 5040.0f;
    s = s * r2 + 1.0f / 120.0f;
    s = s * r2 - 1.0f / 6.0f;
    s = (s * r2) * r + r;
    int32_t odd = -(q & 1);
    float v = mf_from_bits_f((mf_bits_f(c) & ~odd) | (mf_bits_f(s) & odd));
    int32_t sign = (int32_t)((uint32_t)((q + 1) & 2) << 30);
    return mf_from_bits_f(mf_bits_f(v) ^ sign);
}

MF_INLINE float mf_cosf(float x) { return mf_cos_shiftedf(x, 0); }
MF_INLINE float mf_sinf(float x) { return mf_cos_shiftedf(x, 3); }

/* ------------------------------------------------------------ whole-array helpers (tests) */
/* out[i] = f(x[i]); the trig ones fall back to libm beyond MF_TRIG_LIMIT. */
static MF_CLONES void mf_exp_block_d(const double *x, double *out, int64_t n)
{ for (int64_t i = 0; i < n; i++) out[i] = mf_exp(x[i]); }
static MF_CLONES void mf_exp_block_f(const float *x, float *out, int64_t n)
{ for (int64_t i = 0; i < n; i++) out[i] = mf_expf(x[i]); }

static MF_CLONES void mf_trig_block_d(const double *x, double *out, int64_t n, int64_t shift)
{
    int64_t far = 0;
    for (int64_t i = 0; i < n; i++) {
        out[i] = mf_cos_shifted(x[i], shift);
        far |= (x[i] > MF_TRIG_LIMIT_D) | (x[i] < -MF_TRIG_LIMIT_D);
    }
    if (far)
        for (int64_t i = 0; i < n; i++)
            if (fabs(x[i]) > MF_TRIG_LIMIT_D) out[i] = shift ? sin(x[i]) : cos(x[i]);
}
static MF_CLONES void mf_trig_block_f(const float *x, float *out, int64_t n, int64_t shift)
{
    int32_t far = 0;
    for (int64_t i = 0; i < n; i++) {
        out[i] = mf_cos_shiftedf(x[i], (int32_t)shift);
        far |= (x[i] > MF_TRIG_LIMIT_F) | (x[i] < -MF_TRIG_LIMIT_F);
    }
    if (far)
        for (int64_t i = 0; i < n; i++)
            if (fabsf(x[i]) > MF_TRIG_LIMIT_F) out[i] = shift ? sinf(x[i]) : cosf(x[i]);
}

#endif /* METAFAST_VECMATH_H */
