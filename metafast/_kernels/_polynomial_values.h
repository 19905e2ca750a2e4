/* The three-term recurrence of the polynomial family for one block of rows (see
 * _polynomial_tile.pxd, which calls it for every block and input dimension):
 *
 *     P_0 = 1, P_1 = u, P_{k+1} = a_k u P_k - b_k P_{k-1}
 *     (Legendre a_k = (2k+1)/(k+1), b_k = k/(k+1); Chebyshev a_k = 2, b_k = 1)
 *
 * and, when dP is not NULL, P'_{k+1} = a_k (P_k + u P'_k) - b_k P'_{k-1}.  Row k of P holds
 * P_k of the B rows of the block (P[k * B + r]).
 *
 * Why C and out of line: written as an inline Cython function it was inlined into the large
 * OpenMP bodies of the entry points, where GCC kept the recurrence in scalar registers and
 * stack slots instead of vectors (the polynomial weighted sums ran 5-10% slower than when the
 * function stood alone).  A target_clones function is never inlined, and each clone vectorises
 * the loop over the rows on its own SIMD width. */
#ifndef METAFAST_POLYNOMIAL_VALUES_H
#define METAFAST_POLYNOMIAL_VALUES_H

#include <stdint.h>
#include "_vecmath.h"

MF_INLINE void mf_poly_values_b(const double *restrict u, const int64_t B, int64_t D, int kind,
                                double *restrict P, double *restrict dP)
{
    for (int64_t r = 0; r < B; r++) P[r] = 1.0;
    if (dP)
        for (int64_t r = 0; r < B; r++) dP[r] = 0.0;
    if (D == 0) return;
    for (int64_t r = 0; r < B; r++) P[B + r] = u[r];
    if (dP)
        for (int64_t r = 0; r < B; r++) dP[B + r] = 1.0;
    for (int64_t k = 1; k < D; k++) {
        const double a = kind == 0 ? (2.0 * k + 1.0) / (k + 1.0) : 2.0;
        const double b = kind == 0 ? k / (k + 1.0) : 1.0;
        const double *restrict p0 = P + (k - 1) * B, *restrict p1 = p0 + B;
        double *restrict p2 = P + (k + 1) * B;
        if (dP) {
            const double *restrict d0 = dP + (k - 1) * B, *restrict d1 = d0 + B;
            double *restrict d2 = dP + (k + 1) * B;
            for (int64_t r = 0; r < B; r++) d2[r] = a * (p1[r] + u[r] * d1[r]) - b * d0[r];
        }
        for (int64_t r = 0; r < B; r++) p2[r] = a * u[r] * p1[r] - b * p0[r];
    }
}

/* The entry point; the block length of the tiles (8) gets its own copy with B a constant. */
static MF_CLONES void mf_poly_values(const double *restrict u, int64_t B, int64_t D, int kind,
                                     double *restrict P, double *restrict dP)
{
    if (B == 8)
        mf_poly_values_b(u, 8, D, kind, P, dP);
    else
        mf_poly_values_b(u, B, D, kind, P, dP);
}

#endif /* METAFAST_POLYNOMIAL_VALUES_H */
