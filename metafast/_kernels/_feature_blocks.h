/* Block kernels of the exp/cos-based basis families, for double and float.
 *
 * This file is a template: _features.h includes it twice, with MF_T = double / float and the
 * matching math functions, giving e.g. mf_rbf_wsum_rows_d and mf_rbf_wsum_rows_f.  Each
 * function works on a block of rows that one thread owns, so results never depend on the thread
 * count; every loop over the block is a plain elementwise loop the compiler vectorises in each
 * MF_CLONES clone (distance -> exp -> accumulate).  Callers (Cython) own threads and scratch.
 *
 * Families:
 *   RBF       Phi_ij = exp(-0.5 sum_k ((x_ik - c_jk) s_jk)^2),  s = 1 / length scale, (m, d)
 *   features  Phi_ij = act(b_j + sum_k x_ik Om_jk),  act = scale * cos (random Fourier
 *             features) or max(0, .) (random ReLU features)
 */

#define MF_CAT2(a, b) a##b
#define MF_CAT(a, b) MF_CAT2(a, b)
#define MF_NAME(f) MF_CAT(f, MF_SUF)

/* z[0:n] <- act(z[0:n]); act 0: scale * cos, 1: max(0, .). */
MF_INLINE void MF_NAME(mf_activate)(MF_T *restrict z, int64_t n, int act, MF_T scale)
{
    if (act == MF_ACT_RELU) {
        for (int64_t i = 0; i < n; i++) z[i] = z[i] > 0 ? z[i] : (MF_T)0;
        return;
    }
    int far = 0;
    for (int64_t i = 0; i < n; i++)
        far |= (z[i] > MF_TRIG_LIMIT) | (z[i] < -MF_TRIG_LIMIT);
    if (far) {   /* rare: libm's exact reduction for the huge arguments only */
        for (int64_t i = 0; i < n; i++)
            z[i] = scale * ((z[i] > MF_TRIG_LIMIT || z[i] < -MF_TRIG_LIMIT) ? MF_LIBM_COS(z[i])
                                                                          : MF_COS(z[i]));
        return;
    }
    for (int64_t i = 0; i < n; i++) z[i] = scale * MF_COS(z[i]);
}

/* ------------------------------------------------------------------------------------ RBF */

/* row[j] = sum_q ((x[q] - Ct[q, j]) * St[q, j])^2; with a constant d the q loop unrolls. */
MF_INLINE void MF_NAME(mf_row_sqdist)(const MF_T *restrict x, int64_t d,
                                      const MF_T *restrict Ct, const MF_T *restrict St,
                                      int64_t m, MF_T *restrict row)
{
    for (int64_t j = 0; j < m; j++) {
        MF_T z = 0;
        for (int64_t q = 0; q < d; q++) {
            MF_T u = (x[q] - Ct[q * m + j]) * St[q * m + j];
            z += u * u;
        }
        row[j] = z;
    }
}

/* Design rows: out (n, m) row-major; Ct, St: centres and inverse scales transposed (d, m). */
static MF_CLONES void MF_NAME(mf_rbf_design_rows)(
    const MF_T *restrict X, int64_t n, int64_t d, const MF_T *restrict Ct,
    const MF_T *restrict St, int64_t m, MF_T *restrict out)
{
    for (int64_t i = 0; i < n; i++) {
        MF_T *restrict row = out + i * m;
        const MF_T *x = X + i * d;
        switch (d) {                      /* one pass over the row for small d (see above) */
        case 1: MF_NAME(mf_row_sqdist)(x, 1, Ct, St, m, row); break;
        case 2: MF_NAME(mf_row_sqdist)(x, 2, Ct, St, m, row); break;
        case 3: MF_NAME(mf_row_sqdist)(x, 3, Ct, St, m, row); break;
        case 4: MF_NAME(mf_row_sqdist)(x, 4, Ct, St, m, row); break;
        default:
            for (int64_t j = 0; j < m; j++) row[j] = 0;
            for (int64_t k = 0; k < d; k++) {
                const MF_T xk = x[k];
                const MF_T *restrict c = Ct + k * m;
                const MF_T *restrict s = St + k * m;
                for (int64_t j = 0; j < m; j++) {
                    MF_T u = (xk - c[j]) * s[j];
                    row[j] += u * u;
                }
            }
        }
        for (int64_t j = 0; j < m; j++) row[j] = MF_EXP((MF_T)-0.5 * row[j]);
    }
}

/* e[i] = -sum_q ((xt[q, i] - c[q]) * s[q])^2 in one pass over i; inlined with a constant d
 * the q loop unrolls and the i loop vectorises (one store per element instead of d). */
MF_INLINE void MF_NAME(mf_neg_sqdist)(const MF_T *restrict xt, int64_t n, int64_t d,
                                      const MF_T *restrict c, const MF_T *restrict s,
                                      MF_T *restrict e)
{
    for (int64_t i = 0; i < n; i++) {
        MF_T z = 0;
        for (int64_t q = 0; q < d; q++) {
            MF_T u = (xt[q * n + i] - c[q]) * s[q];
            z -= u * u;
        }
        e[i] = z;
    }
}

/* Weighted sums of n rows: out (n, k) = Phi(X) @ W with W (m, k), C and S (m, d), never more than
 * one column of Phi at a time.  scratch: n * (d + 1 + k) values. */
static MF_CLONES void MF_NAME(mf_rbf_wsum_rows)(
    const MF_T *restrict X, int64_t n, int64_t d, const MF_T *restrict C,
    const MF_T *restrict S, int64_t m, const MF_T *restrict W, int64_t k,
    MF_T *restrict out, MF_T *restrict scratch)
{
    MF_T *restrict xt = scratch;          /* (d, n) the block transposed */
    MF_T *restrict e = xt + d * n;        /* (n,)   one column of Phi */
    MF_T *restrict acc = e + n;           /* (k, n) the sums, transposed */
    for (int64_t i = 0; i < n; i++)
        for (int64_t q = 0; q < d; q++) xt[q * n + i] = X[i * d + q];
    for (int64_t i = 0; i < k * n; i++) acc[i] = 0;
    const MF_T half = (MF_T)0.70710678118654752440;   /* sqrt(1/2): folds the -0.5 into s */
    MF_T cj[8], sj[8];
    for (int64_t j = 0; j < m; j++) {
        if (d <= 8) {                     /* one pass, the dimension a compile-time constant */
            for (int64_t q = 0; q < d; q++) {
                cj[q] = C[j * d + q];
                sj[q] = S[j * d + q] * half;
            }
            switch (d) {
            case 1: MF_NAME(mf_neg_sqdist)(xt, n, 1, cj, sj, e); break;
            case 2: MF_NAME(mf_neg_sqdist)(xt, n, 2, cj, sj, e); break;
            case 3: MF_NAME(mf_neg_sqdist)(xt, n, 3, cj, sj, e); break;
            case 4: MF_NAME(mf_neg_sqdist)(xt, n, 4, cj, sj, e); break;
            case 5: MF_NAME(mf_neg_sqdist)(xt, n, 5, cj, sj, e); break;
            case 6: MF_NAME(mf_neg_sqdist)(xt, n, 6, cj, sj, e); break;
            case 7: MF_NAME(mf_neg_sqdist)(xt, n, 7, cj, sj, e); break;
            default: MF_NAME(mf_neg_sqdist)(xt, n, 8, cj, sj, e); break;
            }
        } else {                          /* many dimensions: one pass per dimension */
            for (int64_t i = 0; i < n; i++) e[i] = 0;
            for (int64_t q = 0; q < d; q++) {
                const MF_T c = C[j * d + q], s = S[j * d + q] * half;
                const MF_T *restrict xq = xt + q * n;
                for (int64_t i = 0; i < n; i++) {
                    MF_T u = (xq[i] - c) * s;
                    e[i] -= u * u;
                }
            }
        }
        if (k == 1) {                     /* the common case: exp and accumulate in one pass */
            const MF_T w = W[j];
            for (int64_t i = 0; i < n; i++) acc[i] += w * MF_EXP(e[i]);
            continue;
        }
        for (int64_t i = 0; i < n; i++) e[i] = MF_EXP(e[i]);
        for (int64_t o = 0; o < k; o++) {
            const MF_T w = W[j * k + o];
            MF_T *restrict a = acc + o * n;
            for (int64_t i = 0; i < n; i++) a[i] += w * e[i];
        }
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < k; o++) out[i * k + o] = acc[o * n + i];
}

/* Gradient of sum_i G_ij Phi_ij over all n rows for ONE centre j (c, s: its (d,) centre and
 * inverse scales):  grad_c[q] = sum_i G_ij Phi_ij u_iq s_q,  grad_l[q] = sum_i G_ij Phi_ij u_iq^2
 * with u_iq = (x_iq - c_q) s_q (grad_l is with respect to log length scale q of centre j).
 * Xt is X transposed (d, n); G is (n, m) row-major.  scratch: B * (2 + 3 d) values. */
static MF_CLONES void MF_NAME(mf_rbf_vjp_center)(
    const MF_T *restrict Xt, int64_t n, int64_t d, const MF_T *restrict G, int64_t m, int64_t j,
    const MF_T *restrict c, const MF_T *restrict s, MF_T *restrict grad_c,
    MF_T *restrict grad_l, MF_T *restrict scratch, int64_t B)
{
    MF_T *restrict u = scratch;           /* (d, B) */
    MF_T *restrict g = u + d * B;         /* (B,)   G[:, j] of the block */
    MF_T *restrict ph = g + B;            /* (B,)   G_ij * Phi_ij */
    MF_T *restrict ac = ph + B;           /* (d, B) partial sums for grad_c */
    MF_T *restrict al = ac + d * B;       /* (d, B) partial sums for grad_l */
    for (int64_t i = 0; i < 2 * d * B; i++) ac[i] = 0;
    for (int64_t i0 = 0; i0 < n; i0 += B) {
        const int64_t nb = n - i0 < B ? n - i0 : B;
        for (int64_t i = 0; i < nb; i++) g[i] = G[(i0 + i) * m + j];
        for (int64_t i = 0; i < nb; i++) ph[i] = 0;
        for (int64_t q = 0; q < d; q++) {
            const MF_T cq = c[q], sq = s[q];
            const MF_T *restrict xq = Xt + q * n + i0;
            MF_T *restrict uq = u + q * B;
            for (int64_t i = 0; i < nb; i++) {
                MF_T v = (xq[i] - cq) * sq;
                /* |u| beyond MF_U_MAX already gives Phi = 0; clamping keeps u finite, so the
                 * products below are 0 * finite = 0, never 0 * inf = NaN */
                v = MF_FABS(v) > MF_U_MAX ? MF_COPYSIGN(MF_U_MAX, v) : v;
                uq[i] = v;
                ph[i] += v * v;
            }
        }
        for (int64_t i = 0; i < nb; i++) ph[i] = MF_EXP((MF_T)-0.5 * ph[i]) * g[i];
        for (int64_t q = 0; q < d; q++) {
            const MF_T *restrict uq = u + q * B;
            MF_T *restrict acq = ac + q * B, *restrict alq = al + q * B;
            for (int64_t i = 0; i < nb; i++) {
                MF_T t = ph[i] * uq[i];
                acq[i] += t;
                alq[i] += t * uq[i];
            }
        }
    }
    for (int64_t q = 0; q < d; q++) {
        MF_T sc = 0, sl = 0;
        for (int64_t i = 0; i < B; i++) { sc += ac[q * B + i]; sl += al[q * B + i]; }
        grad_c[q] = sc * s[q];
        grad_l[q] = sl;
    }
}

/* ------------------------------------------------------------ random projection features */

/* Design rows: out (n, m) row-major; OmT is the projection transposed (d, m), b (m,). */
static MF_CLONES void MF_NAME(mf_proj_design_rows)(
    const MF_T *restrict X, int64_t n, int64_t d, const MF_T *restrict OmT,
    const MF_T *restrict b, int64_t m, int act, MF_T scale, MF_T *restrict out)
{
    for (int64_t i = 0; i < n; i++) {
        MF_T *restrict row = out + i * m;
        const MF_T *x = X + i * d;
        for (int64_t j = 0; j < m; j++) row[j] = b[j];
        for (int64_t q = 0; q < d; q++) {
            const MF_T xq = x[q];
            const MF_T *restrict o = OmT + q * m;
            for (int64_t j = 0; j < m; j++) row[j] += xq * o[j];
        }
        MF_NAME(mf_activate)(row, m, act, scale);
    }
}

/* Weighted sums of n rows: out (n, k) = Phi(X) @ W, Om (m, d), b (m,), W (m, k).
 * scratch: n * (d + 1 + k) values. */
static MF_CLONES void MF_NAME(mf_proj_wsum_rows)(
    const MF_T *restrict X, int64_t n, int64_t d, const MF_T *restrict Om,
    const MF_T *restrict b, int64_t m, int act, MF_T scale, const MF_T *restrict W, int64_t k,
    MF_T *restrict out, MF_T *restrict scratch)
{
    MF_T *restrict xt = scratch;
    MF_T *restrict e = xt + d * n;
    MF_T *restrict acc = e + n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t q = 0; q < d; q++) xt[q * n + i] = X[i * d + q];
    for (int64_t i = 0; i < k * n; i++) acc[i] = 0;
    for (int64_t j = 0; j < m; j++) {
        const MF_T bj = b[j];
        for (int64_t i = 0; i < n; i++) e[i] = bj;
        for (int64_t q = 0; q < d; q++) {
            const MF_T o = Om[j * d + q];
            const MF_T *restrict xq = xt + q * n;
            for (int64_t i = 0; i < n; i++) e[i] += xq[i] * o;
        }
        MF_NAME(mf_activate)(e, n, act, scale);
        for (int64_t o = 0; o < k; o++) {
            const MF_T w = W[j * k + o];
            MF_T *restrict a = acc + o * n;
            for (int64_t i = 0; i < n; i++) a[i] += w * e[i];
        }
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < k; o++) out[i * k + o] = acc[o * n + i];
}

/* Random Fourier features, ONE feature j over all n rows: grad[q] = sum_i G_ij d Phi_ij / d log l_q
 * with Phi_ij = scale cos(z_ij), z_ij = b_j + sum_q x_iq om_q, om_q = eps_q / l_q, so
 * d Phi_ij / d log l_q = scale sin(z_ij) om_q x_iq.  Xt (d, n); G (n, m).  scratch: B * (2 + d). */
static MF_CLONES void MF_NAME(mf_rff_vjp_feature)(
    const MF_T *restrict Xt, int64_t n, int64_t d, const MF_T *restrict G, int64_t m, int64_t j,
    const MF_T *restrict om, MF_T bj, MF_T scale, MF_T *restrict grad, MF_T *restrict scratch,
    int64_t B)
{
    MF_T *restrict g = scratch;           /* (B,) */
    MF_T *restrict z = g + B;             /* (B,) */
    MF_T *restrict al = z + B;            /* (d, B) partial sums */
    for (int64_t i = 0; i < d * B; i++) al[i] = 0;
    for (int64_t i0 = 0; i0 < n; i0 += B) {
        const int64_t nb = n - i0 < B ? n - i0 : B;
        for (int64_t i = 0; i < nb; i++) g[i] = G[(i0 + i) * m + j];
        for (int64_t i = 0; i < nb; i++) z[i] = bj;
        for (int64_t q = 0; q < d; q++) {
            const MF_T oq = om[q];
            const MF_T *restrict xq = Xt + q * n + i0;
            for (int64_t i = 0; i < nb; i++) z[i] += xq[i] * oq;
        }
        int far = 0;
        for (int64_t i = 0; i < nb; i++)
            far |= (z[i] > MF_TRIG_LIMIT) | (z[i] < -MF_TRIG_LIMIT);
        if (far)
            for (int64_t i = 0; i < nb; i++)
                z[i] = ((z[i] > MF_TRIG_LIMIT || z[i] < -MF_TRIG_LIMIT) ? MF_LIBM_SIN(z[i])
                                                                        : MF_SIN(z[i])) * g[i];
        else
            for (int64_t i = 0; i < nb; i++) z[i] = MF_SIN(z[i]) * g[i];
        for (int64_t q = 0; q < d; q++) {
            const MF_T *restrict xq = Xt + q * n + i0;
            MF_T *restrict alq = al + q * B;
            for (int64_t i = 0; i < nb; i++) alq[i] += z[i] * xq[i];
        }
    }
    for (int64_t q = 0; q < d; q++) {
        MF_T sl = 0;
        for (int64_t i = 0; i < B; i++) sl += al[q * B + i];
        grad[q] = scale * om[q] * sl;
    }
}

#undef MF_NAME
