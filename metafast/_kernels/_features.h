/* Block kernels of the rbf / rff / relu families for double (suffix _d) and float (_f).
 * See _feature_blocks.h (the template) and _vecmath.h (vectorisable exp, cos, sin). */
#ifndef METAFAST_FEATURES_H
#define METAFAST_FEATURES_H

#include "_vecmath.h"

#define MF_ACT_COS 0
#define MF_ACT_RELU 1

#define MF_T double
#define MF_SUF _d
#define MF_EXP mf_exp
#define MF_COS mf_cos
#define MF_SIN mf_sin
#define MF_LIBM_COS cos
#define MF_LIBM_SIN sin
#define MF_TRIG_LIMIT MF_TRIG_LIMIT_D
#define MF_FABS fabs
#define MF_COPYSIGN copysign
#define MF_U_MAX 1e150
#include "_feature_blocks.h"
#undef MF_T
#undef MF_SUF
#undef MF_EXP
#undef MF_COS
#undef MF_SIN
#undef MF_LIBM_COS
#undef MF_LIBM_SIN
#undef MF_TRIG_LIMIT
#undef MF_FABS
#undef MF_COPYSIGN
#undef MF_U_MAX

#define MF_T float
#define MF_SUF _f
#define MF_EXP mf_expf
#define MF_COS mf_cosf
#define MF_SIN mf_sinf
#define MF_LIBM_COS cosf
#define MF_LIBM_SIN sinf
#define MF_TRIG_LIMIT MF_TRIG_LIMIT_F
#define MF_FABS fabsf
#define MF_COPYSIGN copysignf
#define MF_U_MAX 1e18f
#include "_feature_blocks.h"
#undef MF_T
#undef MF_SUF
#undef MF_EXP
#undef MF_COS
#undef MF_SIN
#undef MF_LIBM_COS
#undef MF_LIBM_SIN
#undef MF_TRIG_LIMIT
#undef MF_FABS
#undef MF_COPYSIGN
#undef MF_U_MAX

#endif /* METAFAST_FEATURES_H */
