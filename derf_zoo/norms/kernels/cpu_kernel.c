/* Fused CPU kernels for point-wise norms: y = weight * f(alpha * x + shift) + bias, f = erf or tanh.
 *
 * Why C: torch's CPU erf alone costs more than a whole LayerNorm, and an eager Derf makes five passes
 * over memory. Here the forward is one pass (read x, write y), and the backward is one pass that
 * recomputes u = alpha*x + shift from x (the only activation kept), writes dx, and accumulates the
 * weight/bias column sums and the alpha/shift scalar sums per thread.
 *
 * erf and tanh use odd rational approximations x * P(x^2) / Q(x^2) fitted by scripts/fit_fast_math.py
 * (max abs error 3.3e-7 for erf and 3.0e-7 for tanh against float64, i.e. a few float32 ulps near +-1);
 * they vectorize, unlike libm. Built on first use by derf_zoo/norms/kernels/cpu.py and called via ctypes
 * with raw pointers to contiguous float32 tensors. Layout: x is (outer, C, inner) with inner == 1 for
 * channels-last input and inner == H*W... for channels-first input.
 */
#include <stdint.h>
#include <string.h>
#include <omp.h>

enum { FN_ERF = 0, FN_TANH = 1 };

static inline float clampf(float x, float lo, float hi) {
    /* NaN compares false both ways and passes through unchanged, so NaN inputs give NaN outputs. */
    return x > hi ? hi : (x < lo ? lo : x);
}

static inline float erf_fast(float x) {
    x = clampf(x, -3.925f, 3.925f); /* float32 erf is +-1 beyond */
    const float t = x * x;
    float p = 1.986981601e-08f;
    p = p * t - 1.956601182e-06f;
    p = p * t + 1.421702909e-04f;
    p = p * t + 3.719109111e-03f;
    p = p * t + 5.063096434e-02f;
    p = p * t + 2.003632337e-01f;
    p = p * t + 1.128379107e+00f;
    float q = 9.599528275e-04f;
    q = q * t + 1.438987069e-02f;
    q = q * t + 1.151791960e-01f;
    q = q * t + 5.108989477e-01f;
    q = q * t + 1.0f;
    return x * p / q;
}

static inline float tanh_fast(float x) {
    x = clampf(x, -7.9f, 7.9f); /* float32 tanh is +-1 beyond */
    const float t = x * x;
    float p = -1.192393488e-13f;
    p = p * t + 6.482640119e-11f;
    p = p * t - 2.252510001e-08f;
    p = p * t + 1.168943072e-05f;
    p = p * t + 3.153638914e-03f;
    p = p * t + 1.312812418e-01f;
    p = p * t + 1.0f;
    float q = 2.619318839e-04f;
    q = q * t + 2.469185181e-02f;
    q = q * t + 4.646145701e-01f;
    q = q * t + 1.0f;
    return x * p / q;
}

/* exp(x) for x <= 0: x = n*ln2 + r, |r| <= ln2/2, exp(r) by its degree-7 Taylor polynomial
 * (truncation error < 6e-9), 2^n assembled in the exponent bits. Used for erf'(u) = 2/sqrt(pi) exp(-u^2).
 * n is rounded with the 1.5*2^23 "magic number" instead of floorf, and the bit casts are integer ops,
 * so the loop vectorizes (floorf and float->int casts kept gcc from vectorizing it: 10x slower). */
static inline float exp_nonpositive(float x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer in the low mantissa bits */
    x = x < -87.0f ? -87.0f : x;     /* exp(-87) ~ 1.6e-38, still a normal float */
    const float shifted = x * 1.44269504089f + magic;
    const float n = shifted - magic;
    const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits;
    memcpy(&bits, &shifted, sizeof bits); /* low bits hold n + 2^22 */
    bits = (bits - 0x4B400000 + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* erf'(u) = 2/sqrt(pi) exp(-u^2). Past |u| ~ 9.3 it drops below the smallest normal float: return exactly 0
 * there rather than a tiny value whose products with the gradient become denormals. */
static inline float erf_grad(float u) {
    const float t = u * u;
    return t > 87.0f ? 0.0f : 1.1283791670955126f * exp_nonpositive(-t);
}

/* tanh(u) and tanh'(u) = 1 - tanh(u)^2 together from e = exp(-2|u|), r = 1 / (1 + e):
 *   tanh(u) = sign(u) (1 - e) r,   tanh'(u) = 4 e r^2,
 * one exp and one division for both. The derivative is accurate to float32 relative precision in the tails.
 * Not 1 - f*f from tanh_fast: that is off by up to 3e-7 near +-1 and stops at its clamp (7.9), so 1 - f*f kept
 * ~5.5e-7 of slope however large |u| was, and the alpha gradient sum(g * f'(u) * x) grew with |x| (4.8e24
 * instead of 0 at x = 1e30). Exactly 0 past TANH_SATURATION, where float32 tanh rounds to +-1 and eager's
 * 1 - tanh(u)^2 is 0: the same zeros, and no denormal products. The value, which only feeds the weight
 * gradient sum(g * f), is within ~1e-7 of tanh (absolute; 1 - e cancels near 0, a relative error there). */
#define TANH_SATURATION 9.0109f /* atanh(1 - 2^-25): half an ulp below 1 */
static inline void tanh_value_and_grad(float u, float* f, float* d) {
    const float a = __builtin_fabsf(u);
    const float e = exp_nonpositive(-2.0f * a);
    const float r = 1.0f / (1.0f + e);
    const float t = (1.0f - e) * r;
    *f = u < 0.0f ? -t : t;
    *d = a > TANH_SATURATION ? 0.0f : 4.0f * e * r * r;
}

/* Gradients flow on into matmuls, and x86 computes on denormal floats ~100x slower: flush them to zero.
 * (Measured: a ViT step with un-flushed Derf gradients spent 5x longer in its matmuls.) */
static inline float flush_denormal(float v) { return __builtin_fabsf(v) < 1.17549435e-38f ? 0.0f : v; }

/* Forward over one contiguous run of `len` elements sharing the channel pattern given by w/b + stride. */
#define FORWARD_RUN(FN)                                                                                   \
    do {                                                                                                  \
        if (inner == 1) {                                                                                 \
            _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                            \
            for (int64_t o = 0; o < outer; ++o) {                                                         \
                const float* xr = x + o * C;                                                              \
                float* yr = y + o * C;                                                                    \
                if (w) {                                                                                  \
                    _Pragma("omp simd")                                                                   \
                    for (int64_t c = 0; c < C; ++c) yr[c] = w[c] * FN(alpha * xr[c] + shift) + b[c];      \
                } else {                                                                                  \
                    _Pragma("omp simd")                                                                   \
                    for (int64_t c = 0; c < C; ++c) yr[c] = FN(alpha * xr[c] + shift);                    \
                }                                                                                         \
            }                                                                                             \
        } else {                                                                                          \
            _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                            \
            for (int64_t oc = 0; oc < outer * C; ++oc) {                                                  \
                const int64_t c = oc % C;                                                                 \
                const float* xr = x + oc * inner;                                                         \
                float* yr = y + oc * inner;                                                               \
                const float wc = w ? w[c] : 1.0f, bc = w ? b[c] : 0.0f;                                   \
                _Pragma("omp simd")                                                                       \
                for (int64_t s = 0; s < inner; ++s) yr[s] = wc * FN(alpha * xr[s] + shift) + bc;          \
            }                                                                                             \
        }                                                                                                 \
    } while (0)

void pointwise_norm_forward(const float* x, float* y, int64_t outer, int64_t C, int64_t inner, const float* alpha_ptr,
                            const float* shift_ptr, const float* w, const float* b, int fn, int nthreads) {
    /* alpha/shift are read through pointers so the caller never synchronises on .item() */
    const float alpha = *alpha_ptr, shift = shift_ptr ? *shift_ptr : 0.0f;
    if (fn == FN_ERF) {
        FORWARD_RUN(erf_fast);
    } else {
        FORWARD_RUN(tanh_fast);
    }
}

/* f(u) and f'(u) together; both derivatives come from an exp of u, accurate where f saturates. */
#define VALUE_AND_GRAD_ERF(u, f, d) \
    f = erf_fast(u);                \
    d = erf_grad(u)
#define VALUE_AND_GRAD_TANH(u, f, d) \
    tanh_value_and_grad(u, &f, &d)

/* Backward. Per thread: column sums of g*f(u) (dweight) and g (dbias) into partial_cols[tid] (2*C floats),
 * and the scalar sums of gu*x (dalpha) and gu (dshift) into partial_scalars[tid] (2 doubles), where
 * gu = g * weight * f'(u). Row partials are summed in float, rows and threads in double. */
#define BACKWARD_RUN(VALUE_AND_GRAD)                                                                      \
    _Pragma("omp parallel num_threads(nthreads)") {                                                       \
        const int tid = omp_get_thread_num();                                                             \
        float* dw = partial_cols + (int64_t)tid * 2 * C;                                                  \
        float* db = dw + C;                                                                               \
        double sum_alpha = 0.0, sum_shift = 0.0;                                                          \
        if (inner == 1) {                                                                                 \
            _Pragma("omp for schedule(static)")                                                           \
            for (int64_t o = 0; o < outer; ++o) {                                                         \
                const float* xr = x + o * C;                                                              \
                const float* gr = g + o * C;                                                              \
                float* dxr = dx + o * C;                                                                  \
                float row_alpha = 0.0f, row_shift = 0.0f;                                                 \
                _Pragma("omp simd reduction(+ : row_alpha, row_shift)")                                   \
                for (int64_t c = 0; c < C; ++c) {                                                         \
                    const float xv = xr[c], gv = gr[c], u = alpha * xv + shift;                          \
                    float f, d;                                                                           \
                    VALUE_AND_GRAD(u, f, d);                                                              \
                    dw[c] += gv * f;                                                                      \
                    db[c] += gv;                                                                          \
                    const float gu = (w ? gv * w[c] : gv) * d;                                            \
                    dxr[c] = flush_denormal(gu * alpha);                                                  \
                    row_alpha += gu * xv;                                                                 \
                    row_shift += gu;                                                                      \
                }                                                                                         \
                sum_alpha += row_alpha;                                                                   \
                sum_shift += row_shift;                                                                   \
            }                                                                                             \
        } else {                                                                                          \
            _Pragma("omp for schedule(static)")                                                           \
            for (int64_t oc = 0; oc < outer * C; ++oc) {                                                  \
                const int64_t c = oc % C;                                                                 \
                const float* xr = x + oc * inner;                                                         \
                const float* gr = g + oc * inner;                                                         \
                float* dxr = dx + oc * inner;                                                             \
                const float wc = w ? w[c] : 1.0f;                                                         \
                float run_w = 0.0f, run_b = 0.0f, run_alpha = 0.0f, run_shift = 0.0f;                     \
                _Pragma("omp simd reduction(+ : run_w, run_b, run_alpha, run_shift)")                     \
                for (int64_t s = 0; s < inner; ++s) {                                                     \
                    const float xv = xr[s], gv = gr[s], u = alpha * xv + shift;                          \
                    float f, d;                                                                           \
                    VALUE_AND_GRAD(u, f, d);                                                              \
                    run_w += gv * f;                                                                      \
                    run_b += gv;                                                                          \
                    const float gu = gv * wc * d;                                                         \
                    dxr[s] = flush_denormal(gu * alpha);                                                  \
                    run_alpha += gu * xv;                                                                 \
                    run_shift += gu;                                                                      \
                }                                                                                         \
                dw[c] += run_w;                                                                           \
                db[c] += run_b;                                                                           \
                sum_alpha += run_alpha;                                                                   \
                sum_shift += run_shift;                                                                   \
            }                                                                                             \
        }                                                                                                 \
        partial_scalars[2 * tid] = sum_alpha;                                                             \
        partial_scalars[2 * tid + 1] = sum_shift;                                                         \
    }

void pointwise_norm_backward(const float* x, const float* g, float* dx, int64_t outer, int64_t C, int64_t inner,
                             const float* alpha_ptr, const float* shift_ptr, const float* w, int fn, int nthreads,
                             float* partial_cols, double* partial_scalars, float* dweight, float* dbias,
                             float* dalpha, float* dshift) {
    const float alpha = *alpha_ptr, shift = shift_ptr ? *shift_ptr : 0.0f;
    memset(partial_cols, 0, sizeof(float) * 2 * C * nthreads);
    memset(partial_scalars, 0, sizeof(double) * 2 * nthreads);
    if (fn == FN_ERF) {
        BACKWARD_RUN(VALUE_AND_GRAD_ERF)
    } else {
        BACKWARD_RUN(VALUE_AND_GRAD_TANH)
    }
    /* Finish the reductions over threads here, in double: no extra torch ops on the caller's side. */
    double sum_alpha = 0.0, sum_shift = 0.0;
    for (int t = 0; t < nthreads; ++t) {
        sum_alpha += partial_scalars[2 * t];
        sum_shift += partial_scalars[2 * t + 1];
    }
    *dalpha = (float)sum_alpha;
    if (dshift) *dshift = (float)sum_shift;
    if (dweight) {
        for (int64_t c = 0; c < C; ++c) {
            double sw = 0.0, sb = 0.0;
            for (int t = 0; t < nthreads; ++t) {
                sw += partial_cols[(int64_t)t * 2 * C + c];
                sb += partial_cols[(int64_t)t * 2 * C + C + c];
            }
            dweight[c] = (float)sw;
            dbias[c] = (float)sb;
        }
    }
}
