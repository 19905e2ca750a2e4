# C block kernels of the rbf / rff / relu families (see _features.h), for cimport by the .pyx files.
from cython cimport floating
from libc.stdint cimport int64_t

cdef extern from "_features.h" nogil:
    int MF_ACT_COS
    int MF_ACT_RELU

    void mf_rbf_design_rows_d(const double *X, int64_t n, int64_t d, const double *Ct,
                              const double *St, int64_t m, double *out)
    void mf_rbf_design_rows_f(const float *X, int64_t n, int64_t d, const float *Ct,
                              const float *St, int64_t m, float *out)
    void mf_rbf_wsum_rows_d(const double *X, int64_t n, int64_t d, const double *C,
                            const double *S, int64_t m, const double *W, int64_t k,
                            double *out, double *scratch)
    void mf_rbf_wsum_rows_f(const float *X, int64_t n, int64_t d, const float *C,
                            const float *S, int64_t m, const float *W, int64_t k,
                            float *out, float *scratch)
    void mf_rbf_vjp_center_d(const double *Xt, int64_t n, int64_t d, const double *G, int64_t m,
                             int64_t j, const double *c, const double *s, double *grad_c,
                             double *grad_l, double *scratch, int64_t B)
    void mf_rbf_vjp_center_f(const float *Xt, int64_t n, int64_t d, const float *G, int64_t m,
                             int64_t j, const float *c, const float *s, float *grad_c,
                             float *grad_l, float *scratch, int64_t B)

    void mf_proj_design_rows_d(const double *X, int64_t n, int64_t d, const double *OmT,
                               const double *b, int64_t m, int act, double scale, double *out)
    void mf_proj_design_rows_f(const float *X, int64_t n, int64_t d, const float *OmT,
                               const float *b, int64_t m, int act, float scale, float *out)
    void mf_proj_wsum_rows_d(const double *X, int64_t n, int64_t d, const double *Om,
                             const double *b, int64_t m, int act, double scale, const double *W,
                             int64_t k, double *out, double *scratch)
    void mf_proj_wsum_rows_f(const float *X, int64_t n, int64_t d, const float *Om,
                             const float *b, int64_t m, int act, float scale, const float *W,
                             int64_t k, float *out, float *scratch)
    void mf_rff_vjp_feature_d(const double *Xt, int64_t n, int64_t d, const double *G, int64_t m,
                              int64_t j, const double *om, double bj, double scale, double *grad,
                              double *scratch, int64_t B)
    void mf_rff_vjp_feature_f(const float *Xt, int64_t n, int64_t d, const float *G, int64_t m,
                              int64_t j, const float *om, float bj, float scale, float *grad,
                              float *scratch, int64_t B)

    void mf_exp_block_d(const double *x, double *out, int64_t n)
    void mf_exp_block_f(const float *x, float *out, int64_t n)
    void mf_trig_block_d(const double *x, double *out, int64_t n, int64_t shift)
    void mf_trig_block_f(const float *x, float *out, int64_t n, int64_t shift)


cdef enum:
    DESIGN_ROWS = 32     # rows per parallel work item of a design matrix
    SUM_ROWS = 256       # rows per block of the fused sums (scratch: SUM_ROWS * (d + 1 + k))
    VJP_ROWS = 512       # rows per block of a gradient


# Fused-type facade: one name per block kernel, the dtype picked at compile time.  Each takes the
# block (X, n rows, d) first, the family's parameters last.

cdef inline void rbf_design_rows(const floating* X, int64_t n, int64_t d, int64_t m, floating* out,
                                 const floating* Ct, const floating* St) noexcept nogil:
    if floating is double:
        mf_rbf_design_rows_d(X, n, d, Ct, St, m, out)
    else:
        mf_rbf_design_rows_f(X, n, d, Ct, St, m, out)


cdef inline void rbf_sum_rows(const floating* X, int64_t n, int64_t d, int64_t m,
                              const floating* W, int64_t k, floating* out, floating* scratch,
                              const floating* C, const floating* S) noexcept nogil:
    if floating is double:
        mf_rbf_wsum_rows_d(X, n, d, C, S, m, W, k, out, scratch)
    else:
        mf_rbf_wsum_rows_f(X, n, d, C, S, m, W, k, out, scratch)


cdef inline void rbf_vjp_center(const floating* Xt, int64_t n, int64_t d, const floating* G,
                                int64_t m, int64_t j, const floating* c, const floating* s,
                                floating* grad_c, floating* grad_l,
                                floating* scratch) noexcept nogil:
    """Scratch: VJP_ROWS * (2 + 3 d) values."""
    if floating is double:
        mf_rbf_vjp_center_d(Xt, n, d, G, m, j, c, s, grad_c, grad_l, scratch, VJP_ROWS)
    else:
        mf_rbf_vjp_center_f(Xt, n, d, G, m, j, c, s, grad_c, grad_l, scratch, VJP_ROWS)


cdef inline void proj_design_rows(const floating* X, int64_t n, int64_t d, int64_t m,
                                  floating* out, const floating* OmT, const floating* b, int act,
                                  double scale) noexcept nogil:
    if floating is double:
        mf_proj_design_rows_d(X, n, d, OmT, b, m, act, scale, out)
    else:
        mf_proj_design_rows_f(X, n, d, OmT, b, m, act, <float> scale, out)


cdef inline void proj_sum_rows(const floating* X, int64_t n, int64_t d, int64_t m,
                               const floating* W, int64_t k, floating* out, floating* scratch,
                               const floating* Om, const floating* b, int act,
                               double scale) noexcept nogil:
    if floating is double:
        mf_proj_wsum_rows_d(X, n, d, Om, b, m, act, scale, W, k, out, scratch)
    else:
        mf_proj_wsum_rows_f(X, n, d, Om, b, m, act, <float> scale, W, k, out, scratch)


cdef inline void rff_vjp_feature(const floating* Xt, int64_t n, int64_t d, const floating* G,
                                 int64_t m, int64_t j, const floating* om, floating bj,
                                 double scale, floating* grad, floating* scratch) noexcept nogil:
    """Scratch: VJP_ROWS * (2 + d) values."""
    if floating is double:
        mf_rff_vjp_feature_d(Xt, n, d, G, m, j, om, bj, scale, grad, scratch, VJP_ROWS)
    else:
        mf_rff_vjp_feature_f(Xt, n, d, G, m, j, om, bj, <float> scale, grad, scratch, VJP_ROWS)


cdef inline int check_act(int act) except -1:
    if act != MF_ACT_COS and act != MF_ACT_RELU:
        raise ValueError(f"unknown activation code {act}")
    return 0
