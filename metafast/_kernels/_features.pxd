# C block kernels of the rbf / rff / relu families (see _features.h), for cimport by the .pyx files.
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
