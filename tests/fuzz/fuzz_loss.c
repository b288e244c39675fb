/* Fuzz target: the softmax, soft-target and loss API with fuzzer-chosen shapes, strides,
 * temperatures, parameters and values (NaN, +-INFINITY, -INFINITY masks, +-FLT_MAX,
 * denormals, signed zeros, huge and tiny values, masked and ignored rows).
 *
 * Input: one byte picks the entry point, the rest drives a fuzz_stream.
 *
 * Invariants, for every call:
 *   - the status is KD_OK exactly when the arguments are valid (for the kernels and the
 *     single-teacher loss, predicted here from the documented rules), and otherwise one that
 *     the documented rules allow for these arguments;
 *   - on failure every output (and the input of an in-place call) is untouched;
 *   - on success nothing outside the rows x classes outputs is written (stride padding);
 *   - probabilities lie in [0, 1], masked classes get exactly 0 (log: -INFINITY), and every row
 *     sums to 1 within PROB_SUM_TOLERANCE;
 *   - results agree with a double-precision reference within REFERENCE_TOLERANCE (relative)
 *     where the problem is well conditioned; KL and cross-entropy values and gradients (one
 *     logits teacher, moderate inputs) with a long-double one in non-cancelling forms;
 *   - in-place calls give the out-of-place results, bit for bit; an ensemble of one member
 *     gives kd_loss_compute's results, bit for bit (both documented);
 *   - loss values and gradients are never NaN, are finite for finite inputs of moderate size
 *     (|x| <= 1e4, T in [1e-2, 1e2]), the parts are consistent (total = alpha S soft +
 *     (1 - alpha) hard), ignored rows and masked classes get zero gradient, and the gradient of
 *     KL and cross-entropy rows sums to 0.
 *
 * Tolerances. Every output is a double-precision value rounded once to float (relative error
 * 2^-24 = 6e-8), or a float kernel documented accurate to a few float ulps; the loss header
 * promises 1e-5 relative against float64. REFERENCE_TOLERANCE = 1e-5 is that promise. A row of
 * at most MAX_CLASSES probabilities each within 1e-5 relative of its exact value sums to 1
 * within 1e-5: PROB_SUM_TOLERANCE. Results in the float denormal range have an absolute error of
 * up to half a denormal ulp, covered by the absolute term DENORMAL_FLOOR. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kd.h>

#include "fuzz_support.h"
#include "support.h"

#define REFERENCE_TOLERANCE 1e-5
#define PROB_SUM_TOLERANCE 1e-5
#define DENORMAL_FLOOR 1e-40

enum { MAX_ROWS = 6, MAX_CLASSES = 40, MAX_STRIDE = MAX_CLASSES + 3, MAX_MEMBERS = 3,
       BUFFER = MAX_ROWS * MAX_STRIDE };

/* --- shapes and inputs ------------------------------------------------------------------- */

typedef struct shape {
    size_t rows, classes, in_stride, out_stride;
    int zero, narrow, huge; /* the anomalies this shape has, if any */
} shape;

static size_t stride_for(fuzz_stream *s, size_t classes, int *narrow)
{
    uint8_t k = fuzz_u8(s);
    if (k == 0xFF && classes > 1) {
        *narrow = 1;
        return classes - 1;
    }
    return classes + k % 4;
}

/* A shape; `packed`: both strides equal to classes. */
static shape fuzz_shape(fuzz_stream *s, int packed)
{
    shape sh = {fuzz_range(s, 1, MAX_ROWS), fuzz_range(s, 1, MAX_CLASSES), 0, 0, 0, 0, 0};
    sh.in_stride = packed ? sh.classes : stride_for(s, sh.classes, &sh.narrow);
    sh.out_stride = packed ? sh.classes : stride_for(s, sh.classes, &sh.narrow);
    switch (fuzz_u8(s) % 32) {
    case 0:
        sh.rows = 0;
        sh.zero = 1;
        break;
    case 1:
        sh.classes = 0;
        sh.zero = 1;
        break;
    case 2: /* an extent no address space holds: must be refused before anything is read */
        sh.rows = (size_t)PTRDIFF_MAX / sizeof(float) / sh.in_stride + 2 + fuzz_u8(s);
        sh.huge = 1;
        break;
    default:
        break;
    }
    return sh;
}

static int shape_ok(const shape *sh) { return !sh->zero && !sh->narrow && !sh->huge; }

/* Whether the rows can be read to predict their conditions: a narrow stride only makes rows
 * overlap, and the library may report a row's condition rather than the stride. */
static int rows_readable(const shape *sh) { return !sh->zero && !sh->huge; }

static void fill(fuzz_stream *s, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = fuzz_float(s);
}

/* Rows of non-negative values (from the fuzzer's floats, made non-negative), normalised in
 * float to sum to 1 when `normalise` is set and the row allows it. */
static void fill_probabilities(fuzz_stream *s, float *x, const shape *sh, int normalise)
{
    for (size_t r = 0; r < sh->rows && r < MAX_ROWS; r++) {
        float *row = x + r * sh->in_stride;
        double sum = 0.0;
        for (size_t i = 0; i < sh->classes; i++) {
            row[i] = fuzz_u8(s) % 8 == 0 ? fuzz_float(s) : fabsf(fuzz_float(s));
            sum += row[i];
        }
        if (normalise && isfinite(sum) && sum > 0.0)
            for (size_t i = 0; i < sh->classes; i++)
                row[i] = (float)(row[i] / sum);
    }
}

/* Conditions of one row of logits. */
static int row_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (isnan(x[i]) || x[i] == INFINITY)
            return 1;
    return 0;
}

static int row_all_masked(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (x[i] != -INFINITY)
            return 0;
    return 1;
}

/* Whether a row of probabilities is accepted: finite, >= 0, sum within the tolerance. */
static int probability_row_ok(const float *p, size_t n, int *nonfinite)
{
    double sum = 0.0;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(p[i]))
            *nonfinite = 1;
        if (!isfinite(p[i]) || p[i] < 0.0f)
            ok = 0;
        sum += p[i];
    }
    return ok && fabs(sum - 1.0) <= KD_PROBABILITY_SUM_TOLERANCE;
}

static int temperature_ok(float t) { return isfinite(t) && t > 0.0f; }

/* --- output checks ------------------------------------------------------------------------ */

/* Everything of a strided output buffer outside rows x classes still holds the sentinel. */
static void check_padding(const float *out, const shape *sh, size_t stride)
{
    float expected[BUFFER];
    kd_test_fill_sentinel(expected, BUFFER);
    for (size_t k = 0; k < BUFFER; k++) {
        size_t r = k / stride, i = k % stride;
        if (r < sh->rows && i < sh->classes)
            continue;
        FUZZ_CHECK(memcmp(&out[k], &expected[k], sizeof(float)) == 0,
                   "padding element %zu (row %zu, column %zu) written", k, r, i);
    }
}

static void check_close(double got, double want, const char *what, size_t r, size_t i)
{
    FUZZ_CHECK(fabs(got - want) <= REFERENCE_TOLERANCE * fabs(want) + DENORMAL_FLOOR,
               "%s[%zu][%zu] = %.9g, reference %.17g", what, r, i, got, want);
}

/* A row of probabilities: in [0, 1], exactly 0 where masked[i], sums to 1; and, if `reference`
 * is given, close to it. */
static void check_probability_row(const float *q, size_t n, const int *masked,
                                  const double *reference, size_t r)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(q[i] >= 0.0f && q[i] <= 1.0f, "q[%zu][%zu] = %g", r, i, (double)q[i]);
        if (masked[i])
            FUZZ_CHECK(q[i] == 0.0f, "masked q[%zu][%zu] = %g", r, i, (double)q[i]);
        if (reference != NULL)
            check_close(q[i], reference[i], "q", r, i);
        sum += q[i];
    }
    FUZZ_CHECK(fabs(sum - 1.0) <= PROB_SUM_TOLERANCE, "row %zu sums to %.17g", r, sum);
}

/* softmax(x / t) of one row in double; masked[i] for -INFINITY; returns log sum exp of the
 * shifted row in *log_sum and the shifted, scaled logits in shifted[]. */
static void reference_softmax(const float *x, size_t n, double t, double *p, double *shifted,
                              int *masked, double *log_sum)
{
    double max = -INFINITY;
    for (size_t i = 0; i < n; i++)
        max = fmax(max, (double)x[i]);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        masked[i] = x[i] == -INFINITY;
        shifted[i] = masked[i] ? -INFINITY : ((double)x[i] - max) / t;
        sum += exp(shifted[i]);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = exp(shifted[i]) / sum;
    *log_sum = log(sum);
}

/* Whether a kernel's status fits its arguments: KD_OK, one of the common conditions that holds,
 * or `row_status` where `row_condition` holds. */
static int kernel_status_fits(kd_status status, const shape *sh, float t, int nonfinite,
                              kd_status row_status, int row_condition)
{
    return status == KD_OK || (status == KD_ERROR_ZERO_SIZE && sh->zero)
           || (status == KD_ERROR_SHAPE_MISMATCH && sh->narrow)
           || (status == KD_ERROR_SIZE_OVERFLOW && sh->huge)
           || (status == KD_ERROR_INVALID_TEMPERATURE && !temperature_ok(t))
           || (status == KD_ERROR_NONFINITE_INPUT && nonfinite)
           || (status == row_status && row_condition);
}

/* The status checks of a kernel call: KD_OK exactly for valid arguments, an error that fits
 * them otherwise, and then the output untouched. Returns whether the call succeeded. */
static int expect_status(const char *what, kd_status status, int valid, int fits, const float *out)
{
    FUZZ_CHECK((status == KD_OK) == valid, "%s: status %d, arguments %s", what, (int)status,
               valid ? "valid" : "invalid");
    FUZZ_CHECK(fits, "%s: status %d does not fit the arguments", what, (int)status);
    if (status != KD_OK)
        FUZZ_CHECK(kd_test_is_sentinel(out, BUFFER), "%s wrote its output on failure", what);
    return status == KD_OK;
}

/* Rows x classes of two strided matrices hold the same bits. */
static void check_same_rows(const float *a, const float *b, const shape *sh, size_t stride,
                            const char *what)
{
    for (size_t r = 0; r < sh->rows; r++)
        FUZZ_CHECK(memcmp(a + r * stride, b + r * stride, sh->classes * sizeof(float)) == 0,
                   "%s: row %zu differs", what, r);
}

/* --- kd_softmax, kd_log_softmax, kd_soft_targets, kd_soft_targets_strided ------------------ */

typedef enum kernel { SOFTMAX, LOG_SOFTMAX, SOFT_TARGETS, SOFT_TARGETS_STRIDED } kernel;

static kd_status call_kernel(kernel k, const float *x, const shape *sh, size_t in_stride, float t,
                             float *out, size_t out_stride)
{
    switch (k) {
    case SOFTMAX:
        return kd_softmax(x, sh->rows, sh->classes, in_stride, t, out, out_stride);
    case LOG_SOFTMAX:
        return kd_log_softmax(x, sh->rows, sh->classes, in_stride, t, out, out_stride);
    case SOFT_TARGETS:
        return kd_soft_targets(x, sh->rows, sh->classes, t, out);
    case SOFT_TARGETS_STRIDED:
        break;
    }
    return kd_soft_targets_strided(x, sh->rows, sh->classes, in_stride, t, out, out_stride);
}

static void check_log_row(const float *out, const float *x, size_t n, double t, size_t r)
{
    double p[MAX_CLASSES], shifted[MAX_CLASSES], log_sum;
    int masked[MAX_CLASSES];
    reference_softmax(x, n, t, p, shifted, masked, &log_sum);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double want = shifted[i] - log_sum;
        FUZZ_CHECK(out[i] <= 0.0f, "log q[%zu][%zu] = %g > 0", r, i, (double)out[i]);
        if (masked[i])
            FUZZ_CHECK(out[i] == -INFINITY, "masked log q[%zu][%zu] = %g", r, i, (double)out[i]);
        else if (want > -0.999 * FLT_MAX)
            FUZZ_CHECK(isfinite(out[i]) && fabs(out[i] - want) <= REFERENCE_TOLERANCE * fabs(want) + 1e-6,
                       "log q[%zu][%zu] = %.9g, reference %.17g", r, i, (double)out[i], want);
        else if (want < -1.001 * FLT_MAX)
            FUZZ_CHECK(out[i] <= -FLT_MAX, "log q[%zu][%zu] = %g, reference %g", r, i,
                       (double)out[i], want);
        sum += exp((double)out[i]);
    }
    FUZZ_CHECK(fabs(sum - 1.0) <= PROB_SUM_TOLERANCE, "exp(log q) of row %zu sums to %.17g", r, sum);
}

static void fuzz_kernel(fuzz_stream *s, kernel k)
{
    static float x[BUFFER], out[BUFFER], in_place[BUFFER];
    shape sh = fuzz_shape(s, k == SOFT_TARGETS);
    const float t = fuzz_temperature(s);
    fill(s, x, BUFFER);
    kd_test_fill_sentinel(out, BUFFER);

    int nonfinite = 0, all_masked = 0;
    for (size_t r = 0; rows_readable(&sh) && r < sh.rows; r++) {
        nonfinite |= row_nonfinite(x + r * sh.in_stride, sh.classes);
        all_masked |= row_all_masked(x + r * sh.in_stride, sh.classes);
    }
    const int valid = shape_ok(&sh) && temperature_ok(t) && !nonfinite && !all_masked;
    static const char *const names[4] = {"kd_softmax", "kd_log_softmax", "kd_soft_targets",
                                         "kd_soft_targets_strided"};
    kd_status status = call_kernel(k, x, &sh, sh.in_stride, t, out, sh.out_stride);
    if (!expect_status(names[k], status, valid,
                       kernel_status_fits(status, &sh, t, nonfinite, KD_ERROR_ALL_MASKED, all_masked), out))
        return;
    check_padding(out, &sh, sh.out_stride);
    for (size_t r = 0; r < sh.rows; r++) {
        const float *xr = x + r * sh.in_stride, *q = out + r * sh.out_stride;
        if (k == LOG_SOFTMAX) {
            check_log_row(q, xr, sh.classes, t, r);
        } else {
            double p[MAX_CLASSES], shifted[MAX_CLASSES], log_sum;
            int masked[MAX_CLASSES];
            reference_softmax(xr, sh.classes, t, p, shifted, masked, &log_sum);
            check_probability_row(q, sh.classes, masked, p, r);
        }
    }
    /* In place (same pointer, same stride): the same bits. */
    memcpy(in_place, x, sizeof x);
    FUZZ_CHECK(call_kernel(k, in_place, &sh, sh.in_stride, t, in_place, sh.in_stride) == KD_OK,
               "in-place call failed");
    float again[BUFFER];
    kd_test_fill_sentinel(again, BUFFER);
    FUZZ_CHECK(call_kernel(k, x, &sh, sh.in_stride, t, again, sh.in_stride) == KD_OK, "call failed");
    check_same_rows(in_place, again, &sh, sh.in_stride, "in place against out of place");
}

/* --- kd_soft_targets_from_probabilities ----------------------------------------------------- */

static void fuzz_from_probabilities(fuzz_stream *s)
{
    static float p[BUFFER], out[BUFFER], in_place[BUFFER];
    shape sh = fuzz_shape(s, 0);
    const float t = fuzz_temperature(s);
    fill(s, p, BUFFER); /* the padding: anything */
    fill_probabilities(s, p, &sh, fuzz_u8(s) % 4 != 0);
    kd_test_fill_sentinel(out, BUFFER);

    int nonfinite = 0, invalid = 0;
    for (size_t r = 0; rows_readable(&sh) && r < sh.rows; r++)
        invalid |= !probability_row_ok(p + r * sh.in_stride, sh.classes, &nonfinite);
    const int valid = shape_ok(&sh) && temperature_ok(t) && !invalid;
    kd_status status = kd_soft_targets_from_probabilities(p, sh.rows, sh.classes, sh.in_stride, t,
                                                          out, sh.out_stride);
    if (!expect_status("kd_soft_targets_from_probabilities", status, valid,
                       kernel_status_fits(status, &sh, t, nonfinite, KD_ERROR_INVALID_PROBABILITIES,
                                          invalid), out))
        return;
    check_padding(out, &sh, sh.out_stride);
    for (size_t r = 0; r < sh.rows; r++) {
        const float *pr = p + r * sh.in_stride;
        double ref[MAX_CLASSES], sum = 0.0, max = 0.0;
        int masked[MAX_CLASSES];
        for (size_t i = 0; i < sh.classes; i++)
            max = fmax(max, (double)pr[i]);
        for (size_t i = 0; i < sh.classes; i++) {
            masked[i] = !(pr[i] > 0.0f);
            ref[i] = masked[i] ? 0.0 : exp((log((double)pr[i]) - log(max)) / t);
            sum += ref[i];
        }
        for (size_t i = 0; i < sh.classes; i++)
            ref[i] /= sum;
        check_probability_row(out + r * sh.out_stride, sh.classes, masked, ref, r);
    }
    memcpy(in_place, p, sizeof p);
    FUZZ_CHECK(kd_soft_targets_from_probabilities(in_place, sh.rows, sh.classes, sh.in_stride, t,
                                                  in_place, sh.in_stride) == KD_OK,
               "in-place call failed");
    float again[BUFFER];
    FUZZ_CHECK(kd_soft_targets_from_probabilities(p, sh.rows, sh.classes, sh.in_stride, t, again,
                                                  sh.in_stride) == KD_OK, "call failed");
    check_same_rows(in_place, again, &sh, sh.in_stride, "in place against out of place");
}

/* --- kd_soft_targets_ensemble ---------------------------------------------------------------- */

typedef struct members {
    size_t count;
    float x[MAX_MEMBERS][BUFFER];
    const float *pointers[MAX_MEMBERS];
    float weights[MAX_MEMBERS];
    const float *weight_pointer; /* NULL: equal weights */
    int weights_ok;
    double total;
} members;

/* Members, weights (often valid, sometimes not), and members of weight 0 filled with NaN when
 * `poison` is set: they must not be read. */
static void fuzz_members(fuzz_stream *s, members *m, int probabilities, const shape *sh)
{
    m->count = fuzz_range(s, 1, MAX_MEMBERS);
    for (size_t k = 0; k < m->count; k++) {
        fill(s, m->x[k], BUFFER);
        if (probabilities)
            fill_probabilities(s, m->x[k], sh, fuzz_u8(s) % 4 != 0);
        m->pointers[k] = m->x[k];
    }
    m->weight_pointer = NULL;
    m->weights_ok = 1;
    m->total = (double)m->count;
    if (fuzz_u8(s) % 2) {
        m->total = 0.0;
        for (size_t k = 0; k < m->count; k++) {
            uint8_t b = fuzz_u8(s);
            m->weights[k] = b % 8 == 0 ? fuzz_float(s) : (float)(b % 4);
            m->weights_ok &= isfinite(m->weights[k]) && m->weights[k] >= 0.0f;
            m->total += m->weights[k];
        }
        m->weights_ok &= m->total > 0.0 && isfinite(m->total);
        m->weight_pointer = m->weights;
    }
    const int poison = fuzz_u8(s) % 2;
    for (size_t k = 0; poison && m->weights_ok && m->weight_pointer != NULL && k < m->count; k++)
        if (m->weights[k] == 0.0f)
            for (size_t i = 0; i < BUFFER; i++)
                m->x[k][i] = NAN;
}

static double weight_of(const members *m, size_t k)
{
    return (m->weight_pointer == NULL ? 1.0 : (double)m->weights[k]) / m->total;
}

static void fuzz_ensemble(fuzz_stream *s)
{
    static members m;
    static float out[BUFFER];
    shape sh = fuzz_shape(s, 0);
    const float t = fuzz_temperature(s);
    fuzz_members(s, &m, 0, &sh);
    const uint8_t mode_byte = fuzz_u8(s);
    const kd_ensemble_mode mode = (kd_ensemble_mode)(mode_byte % 16 == 0 ? 2 : mode_byte % 2);
    kd_test_fill_sentinel(out, BUFFER);

    int nonfinite = 0, all_masked = 0, mean_all_masked = 0;
    double max_scaled = 0.0; /* max |logit| / t over the members read: the conditioning */
    for (size_t r = 0; m.weights_ok && rows_readable(&sh) && r < sh.rows; r++) {
        int any_unmasked_in_mean = 0;
        for (size_t i = 0; i < sh.classes; i++) {
            int masked_by_one = 0;
            for (size_t k = 0; k < m.count; k++) {
                if (weight_of(&m, k) == 0.0)
                    continue;
                const float v = m.x[k][r * sh.in_stride + i];
                masked_by_one |= v == -INFINITY;
                if (isfinite(v))
                    max_scaled = fmax(max_scaled, fabs((double)v) / t);
            }
            any_unmasked_in_mean |= !masked_by_one;
        }
        for (size_t k = 0; k < m.count; k++) {
            if (weight_of(&m, k) == 0.0)
                continue;
            nonfinite |= row_nonfinite(m.x[k] + r * sh.in_stride, sh.classes);
            all_masked |= row_all_masked(m.x[k] + r * sh.in_stride, sh.classes);
        }
        mean_all_masked |= mode == KD_ENSEMBLE_GEOMETRIC && m.count > 1 && !any_unmasked_in_mean;
    }
    const int mode_ok = mode == KD_ENSEMBLE_ARITHMETIC || mode == KD_ENSEMBLE_GEOMETRIC;
    const int valid = shape_ok(&sh) && temperature_ok(t) && mode_ok && m.weights_ok && !nonfinite
                      && !all_masked && !mean_all_masked;
    kd_status status = kd_soft_targets_ensemble(m.pointers, m.count, m.weight_pointer, mode,
                                                sh.rows, sh.classes, sh.in_stride, t, out,
                                                sh.out_stride);
    const int fits = kernel_status_fits(status, &sh, t, nonfinite, KD_ERROR_ALL_MASKED,
                                        all_masked || mean_all_masked)
                     || (status == KD_ERROR_INVALID_ARGUMENT && (!mode_ok || !m.weights_ok));
    if (!expect_status("kd_soft_targets_ensemble", status, valid, fits, out))
        return;
    check_padding(out, &sh, sh.out_stride);
    /* The geometric mean of logits is ill-conditioned when max |v| / t is large: compare with
     * the reference only where rounding the mean cannot move the result past the tolerance. */
    const int geometric = mode == KD_ENSEMBLE_GEOMETRIC && m.count > 1;
    const int compare = !geometric || max_scaled <= 1e6;
    for (size_t r = 0; r < sh.rows; r++) {
        double ref[MAX_CLASSES] = {0}, p[MAX_CLASSES], shifted[MAX_CLASSES], log_sum;
        int masked[MAX_CLASSES], member_masked[MAX_CLASSES];
        for (size_t i = 0; i < sh.classes; i++)
            masked[i] = !geometric;
        if (geometric) { /* softmax of the weighted mean logits; -INFINITY where one masks */
            double max = -INFINITY, sum = 0.0, v[MAX_CLASSES];
            for (size_t i = 0; i < sh.classes; i++) {
                v[i] = 0.0;
                for (size_t k = 0; k < m.count; k++)
                    if (weight_of(&m, k) > 0.0)
                        v[i] += weight_of(&m, k) * (double)m.x[k][r * sh.in_stride + i];
                masked[i] = v[i] == -INFINITY;
                max = fmax(max, v[i]);
            }
            for (size_t i = 0; i < sh.classes; i++)
                sum += ref[i] = exp((v[i] - max) / t);
            for (size_t i = 0; i < sh.classes; i++)
                ref[i] /= sum;
        } else {
            for (size_t k = 0; k < m.count; k++) {
                if (weight_of(&m, k) == 0.0)
                    continue;
                reference_softmax(m.x[k] + r * sh.in_stride, sh.classes, t, p, shifted,
                                  member_masked, &log_sum);
                for (size_t i = 0; i < sh.classes; i++) {
                    ref[i] += weight_of(&m, k) * p[i];
                    masked[i] &= member_masked[i];
                }
            }
        }
        check_probability_row(out + r * sh.out_stride, sh.classes, masked, compare ? ref : NULL, r);
    }
}

/* --- the loss handle ---------------------------------------------------------------------- */

/* The parameters this target knows in detail; the library may know more (appended later),
 * which are set and checked against their bounds only. Unknown indices start at UNKNOWN. */
enum { PARAM_COUNT = KD_LOSS_PARAM_ENSEMBLE_MODE + 1, UNKNOWN = 64,
       VALUES = MAX_ROWS * KD_LOSS_VALUE_COUNT + 4 };

/* Integer and enum parameters take whole numbers only. */
static const int whole_param[PARAM_COUNT] = {0, 0, 1, 1, 1, 1, 0, 1, 1};

/* A parameter index: mostly known ones, sometimes one appended after them, or unknown. */
static int fuzz_param(fuzz_stream *s)
{
    const uint8_t b = fuzz_u8(s);
    if (b % 16 == 0)
        return b % 32 == 0 ? UNKNOWN + b / 32 : -1 - b / 32;
    if (b % 16 == 1)
        return PARAM_COUNT + b / 16 % 4;
    return (int)(b % PARAM_COUNT);
}

static double fuzz_param_value(fuzz_stream *s)
{
    static const double values[] = {NAN,   INFINITY, -INFINITY, -1.0,  0.0,   0.5,   1.0,
                                    2.0,   3.0,      4.0,       5.0,   1e-30, 1e-31, 1e30,
                                    1e31,  20.0,     -100.0,    2.5,   0.25,  1e-3,  1e4,
                                    2147483648.0,    -2147483648.0, 0.999, 1e-2,  100.0};
    const size_t n = sizeof values / sizeof values[0];
    uint8_t k = fuzz_u8(s);
    if (k >= 2 * n) {
        uint64_t bits = (uint64_t)fuzz_u32(s) << 32 | fuzz_u32(s);
        double v;
        memcpy(&v, &bits, sizeof v);
        return v;
    }
    return values[k % n];
}

/* kd_loss_set with fuzzer-chosen parameters (some unknown) and values: accepted exactly when
 * known, within kd_loss_param_bounds and whole where it must be; a rejected set changes
 * nothing. */
static void fuzz_set_params(fuzz_stream *s, kd_loss *loss)
{
    const size_t n = fuzz_range(s, 0, 10);
    for (size_t j = 0; j < n; j++) {
        const int param = fuzz_param(s);
        const double value = fuzz_param_value(s);
        double before = 0.0, after = 0.0, min = 0.0, max = 0.0;
        const int known = kd_loss_param_bounds((kd_loss_param)param, &min, &max) == KD_OK;
        if (param < 0 || param >= UNKNOWN || param < PARAM_COUNT)
            FUZZ_CHECK(known == (param >= 0 && param < PARAM_COUNT), "bounds of parameter %d", param);
        if (known)
            FUZZ_CHECK(kd_loss_get(loss, (kd_loss_param)param, &before) == KD_OK, "get %d", param);
        const kd_status status = kd_loss_set(loss, (kd_loss_param)param, value);
        const int in_bounds = known && value >= min && value <= max;
        const int ok = in_bounds && (param >= PARAM_COUNT || !whole_param[param] || value == floor(value));
        if (param >= PARAM_COUNT && in_bounds && value != floor(value)) /* whole or not: unknown here */
            FUZZ_CHECK(status == KD_OK || status == KD_ERROR_INVALID_ARGUMENT, "set(%d): %d", param,
                       (int)status);
        else
            FUZZ_CHECK(status == (ok ? KD_OK : KD_ERROR_INVALID_ARGUMENT),
                       "set(%d, %.17g): status %d", param, value, (int)status);
        const int accepted = status == KD_OK;
        if (known) {
            FUZZ_CHECK(kd_loss_get(loss, (kd_loss_param)param, &after) == KD_OK, "get %d", param);
            FUZZ_CHECK(memcmp(&after, accepted ? &value : &before, sizeof after) == 0,
                       "parameter %d reads %.17g after set(%.17g) gave %d", param, after, value,
                       (int)status);
        } else {
            FUZZ_CHECK(kd_loss_get(loss, (kd_loss_param)param, &after) == KD_ERROR_INVALID_ARGUMENT,
                       "get of unknown parameter %d", param);
        }
    }
}

/* One loss call's arguments and what the documented rules say about them. */
typedef struct loss_case {
    double p[PARAM_COUNT];
    shape sh;
    size_t teacher_stride;
    const float *teacher; /* NULL: none (for the ensemble path: no members) */
    const int32_t *labels;
    int ensemble;
    /* conditions */
    int null_pointer, nonfinite, all_masked, bad_label, bad_probabilities, bad_masks,
        unsupported, bad_weights;
    int moderate; /* every value read is a mask or |x| <= 1e4, and T in [1e-2, 1e2] */
    size_t counted;
} loss_case;

static int counted_row(const loss_case *c, size_t r)
{
    return c->labels == NULL || (double)c->labels[r] != c->p[KD_LOSS_PARAM_IGNORE_LABEL];
}

static int masks_fit(kd_divergence d, int student_masks, int teacher_masks)
{
    switch (d) {
    case KD_DIVERGENCE_KL:
    case KD_DIVERGENCE_CROSS_ENTROPY: return !student_masks || teacher_masks;
    case KD_DIVERGENCE_REVERSE_KL: return student_masks || !teacher_masks;
    case KD_DIVERGENCE_JENSEN_SHANNON: return 1;
    case KD_DIVERGENCE_LOGIT_MSE: break;
    }
    return student_masks == teacher_masks;
}

static void note_moderate(loss_case *c, float v)
{
    if (v != -INFINITY && !(fabsf(v) <= 1e4f))
        c->moderate = 0;
}

/* Evaluates the documented conditions on the student, the labels and (single teacher) the
 * teacher, over the rows that count. */
static void classify(loss_case *c, const float *student, const members *m)
{
    const double alpha = c->p[KD_LOSS_PARAM_ALPHA], t = c->p[KD_LOSS_PARAM_TEMPERATURE];
    const kd_teacher_kind kind = (kd_teacher_kind)c->p[KD_LOSS_PARAM_TEACHER_KIND];
    const kd_divergence div = (kd_divergence)c->p[KD_LOSS_PARAM_DIVERGENCE];
    const int has_teacher = c->ensemble ? m != NULL : c->teacher != NULL;
    c->null_pointer = (!has_teacher && alpha > 0.0) || (c->labels == NULL && alpha < 1.0);
    c->unsupported = has_teacher && div == KD_DIVERGENCE_LOGIT_MSE && kind == KD_TEACHER_PROBABILITIES;
    c->bad_weights = c->ensemble && m != NULL && !m->weights_ok;
    c->moderate = t >= 1e-2 && t <= 1e2;
    c->counted = 0;
    if (!rows_readable(&c->sh) || c->null_pointer)
        return;
    for (size_t r = 0; r < c->sh.rows; r++) {
        if (!counted_row(c, r))
            continue;
        c->counted++;
        const float *z = student + r * c->sh.in_stride;
        c->nonfinite |= row_nonfinite(z, c->sh.classes);
        c->all_masked |= row_all_masked(z, c->sh.classes);
        for (size_t i = 0; i < c->sh.classes; i++)
            note_moderate(c, z[i]);
        if (c->labels != NULL) {
            const int32_t y = c->labels[r];
            c->bad_label |= y < 0 || (size_t)y >= c->sh.classes || z[y] == -INFINITY;
        }
        for (size_t k = 0; has_teacher && k < (c->ensemble ? m->count : 1); k++) {
            const float *v = (c->ensemble ? m->x[k] : c->teacher) + r * c->teacher_stride;
            if (c->ensemble && m->weights_ok && weight_of(m, k) == 0.0)
                continue;
            for (size_t i = 0; i < c->sh.classes; i++)
                note_moderate(c, v[i]);
            if (kind == KD_TEACHER_LOGITS) {
                c->nonfinite |= row_nonfinite(v, c->sh.classes);
                c->all_masked |= row_all_masked(v, c->sh.classes);
            } else {
                c->bad_probabilities |= !probability_row_ok(v, c->sh.classes, &c->nonfinite);
            }
            for (size_t i = 0; !c->ensemble && i < c->sh.classes; i++)
                c->bad_masks |= !masks_fit(div, z[i] == -INFINITY,
                                           kind == KD_TEACHER_LOGITS ? v[i] == -INFINITY : v[i] == 0.0f);
        }
    }
}

static int status_fits(const loss_case *c, kd_status status, int injected)
{
    const kd_divergence div = (kd_divergence)c->p[KD_LOSS_PARAM_DIVERGENCE];
    switch (status) {
    case KD_OK: return 1;
    case KD_ERROR_NULL_POINTER: return c->null_pointer;
    case KD_ERROR_ZERO_SIZE: return c->sh.zero;
    case KD_ERROR_SHAPE_MISMATCH:
        /* ensembles: masks are not predicted here */
        return c->sh.narrow || c->bad_masks || (c->ensemble && div != KD_DIVERGENCE_JENSEN_SHANNON);
    case KD_ERROR_SIZE_OVERFLOW: return c->sh.huge;
    case KD_ERROR_NONFINITE_INPUT: return c->nonfinite;
    case KD_ERROR_ALL_MASKED: return c->all_masked || c->ensemble;
    case KD_ERROR_INVALID_LABEL: return c->bad_label;
    case KD_ERROR_INVALID_PROBABILITIES: return c->bad_probabilities || c->ensemble;
    case KD_ERROR_UNSUPPORTED: return c->unsupported;
    case KD_ERROR_INVALID_ARGUMENT: return c->bad_weights;
    case KD_ERROR_OUT_OF_MEMORY: return injected;
    default: return 0;
    }
}

static int loss_valid(const loss_case *c)
{
    return shape_ok(&c->sh) && !c->null_pointer && !c->nonfinite && !c->all_masked
           && !c->bad_label && !c->bad_probabilities && !c->bad_masks && !c->unsupported
           && !c->bad_weights;
}

/* The outputs of a successful call. */
static void check_loss_outputs(const loss_case *c, const float *student, const float *values,
                               const float *grad, size_t grad_stride, int grad_separate)
{
    const double alpha = c->p[KD_LOSS_PARAM_ALPHA], t = c->p[KD_LOSS_PARAM_TEMPERATURE];
    const double s_scale = c->p[KD_LOSS_PARAM_SCALE_T_SQUARED] != 0.0 ? t * t : 1.0;
    const kd_reduction reduction = (kd_reduction)c->p[KD_LOSS_PARAM_REDUCTION];
    const kd_divergence div = (kd_divergence)c->p[KD_LOSS_PARAM_DIVERGENCE];
    const int has_teacher = c->teacher != NULL;
    const double row_scale = reduction == KD_REDUCTION_MEAN && c->counted > 0 ? 1.0 / (double)c->counted : 1.0;
    if (values != NULL) {
        const size_t n = reduction == KD_REDUCTION_NONE ? c->sh.rows : 1;
        float sentinel[VALUES];
        kd_test_fill_sentinel(sentinel, VALUES);
        FUZZ_CHECK(memcmp(values + n * KD_LOSS_VALUE_COUNT, sentinel + n * KD_LOSS_VALUE_COUNT,
                          (VALUES - n * KD_LOSS_VALUE_COUNT) * sizeof(float)) == 0,
                   "values written past %zu entries", n * KD_LOSS_VALUE_COUNT);
        for (size_t r = 0; r < n; r++) {
            const float *v = values + r * KD_LOSS_VALUE_COUNT;
            const float total = v[KD_LOSS_VALUE_TOTAL], soft = v[KD_LOSS_VALUE_SOFT],
                        hard = v[KD_LOSS_VALUE_HARD];
            FUZZ_CHECK(!isnan(total) && !isnan(soft) && !isnan(hard), "NaN value: %g %g %g",
                       (double)total, (double)soft, (double)hard);
            if (c->moderate)
                FUZZ_CHECK(isfinite(total) && isfinite(soft) && isfinite(hard),
                           "moderate inputs, values %g %g %g", (double)total, (double)soft, (double)hard);
            FUZZ_CHECK(hard >= 0.0f && soft >= -1e-6f, "negative loss: soft %g, hard %g",
                       (double)soft, (double)hard);
            const int silent = c->counted == 0 || (reduction == KD_REDUCTION_NONE && !counted_row(c, r));
            if (silent || !has_teacher)
                FUZZ_CHECK(soft == 0.0f, "soft %g without teacher or counted row", (double)soft);
            if (silent || c->labels == NULL)
                FUZZ_CHECK(hard == 0.0f, "hard %g without labels or counted row", (double)hard);
            /* soft rounded to float loses up to half a denormal (2^-150), which S = T^2 may
             * magnify past everything else: at T = 1e30 a divergence of 1e-60 reads 0 while
             * the total keeps alpha S soft = 0.5 */
            const double a = alpha * s_scale * soft, b = (1.0 - alpha) * hard;
            const double underflow = alpha * s_scale * 0x1p-150;
            if (isfinite(a) && isfinite(b) && isfinite(total))
                FUZZ_CHECK(fabs(total - (a + b))
                               <= REFERENCE_TOLERANCE * (fabs(a) + fabs(b)) + underflow + 1e-30,
                           "total %.9g, alpha S soft + (1 - alpha) hard = %.17g", (double)total, a + b);
        }
    }
    if (grad == NULL)
        return;
    if (grad_separate)
        check_padding(grad, &c->sh, grad_stride);
    for (size_t r = 0; r < c->sh.rows; r++) {
        const float *g = grad + r * grad_stride, *z = student + r * c->sh.in_stride;
        double sum = 0.0;
        for (size_t i = 0; i < c->sh.classes; i++) {
            FUZZ_CHECK(!isnan(g[i]), "NaN gradient [%zu][%zu]", r, i);
            if (c->moderate)
                FUZZ_CHECK(isfinite(g[i]), "moderate inputs, gradient [%zu][%zu] = %g", r, i, (double)g[i]);
            if (!counted_row(c, r) || z[i] == -INFINITY)
                FUZZ_CHECK(g[i] == 0.0f, "gradient [%zu][%zu] = %g of an ignored row or masked class",
                           r, i, (double)g[i]);
            sum += g[i];
        }
        /* p - q and p - onehot sum to 0: the bound is the rounding of terms of total mass 2. */
        const double mass = 2.0 * (alpha * s_scale / t + (1.0 - alpha)) * row_scale;
        if (div == KD_DIVERGENCE_KL || div == KD_DIVERGENCE_CROSS_ENTROPY)
            FUZZ_CHECK(fabs(sum) <= REFERENCE_TOLERANCE * mass + 1e-35,
                       "gradient row %zu sums to %.9g (scale %.9g)", r, sum, mass);
    }
}

/* --- KL and cross-entropy against a long-double reference ------------------------------- */

typedef long double ld;

/* The largest x_i / t over the kept classes, and sum e^(x_i / t - max) over every kept class
 * but the first maximum (so that log Z = max + log1p(rest) keeps a nearly one-hot row exact). */
static ld reference_rest(const float *x, size_t n, ld t, ld *max)
{
    size_t first = n;
    *max = -(ld)INFINITY;
    for (size_t i = 0; i < n; i++)
        if (x[i] != -INFINITY && (ld)x[i] / t > *max) {
            *max = (ld)x[i] / t;
            first = i;
        }
    ld rest = 0.0L;
    for (size_t i = 0; i < n; i++)
        if (x[i] != -INFINITY && i != first)
            rest += expl((ld)x[i] / t - *max);
    return rest;
}

/* One row's soft and hard terms and the two parts of its gradient (row_scale times d total /
 * d z = soft_grad + hard_grad), in long double and in forms that do not cancel: KL = sum q
 * phi(d) + p_out with d_i = log q_i - log p_i formed from v_i - z_i (exact), q phi(d) =
 * (p - q) + q d, and p_i - q_i = q_i expm1(-d_i) where |d_i| < 1/2; the hard loss as
 * (max - z_y) + log1p(rest). */
static void reference_row(const loss_case *c, const float *z, const float *v, int32_t label,
                          ld row_scale, ld *soft, ld *hard, ld *soft_grad, ld *hard_grad)
{
    const size_t n = c->sh.classes;
    const ld t = (ld)c->p[KD_LOSS_PARAM_TEMPERATURE], alpha = (ld)c->p[KD_LOSS_PARAM_ALPHA];
    const ld s_scale = c->p[KD_LOSS_PARAM_SCALE_T_SQUARED] != 0.0 ? t * t : 1.0L;
    ld zmax, vmax, z1max;
    const ld zrest = reference_rest(z, n, t, &zmax), vrest = reference_rest(v, n, t, &vmax);
    const ld z1rest = reference_rest(z, n, 1.0L, &z1max);
    /* log q_i - log p_i = (v_i - z_i) / t - offset */
    const ld offset = (vmax - zmax) + log1pl(vrest) - log1pl(zrest);
    const ld log_z1 = z1max + log1pl(z1rest), log_zs = zmax + log1pl(zrest);
    ld sum_phi = 0.0L, p_out = 0.0L, entropy = 0.0L;
    for (size_t i = 0; i < n; i++) {
        soft_grad[i] = hard_grad[i] = 0.0L;
        if (z[i] == -INFINITY)
            continue;
        const ld log_p = (ld)z[i] / t - log_zs;
        ld difference; /* p_i - q_i */
        if (v[i] == -INFINITY) {
            difference = expl(log_p);
            p_out += difference;
        } else {
            const ld d = ((ld)v[i] - (ld)z[i]) / t - offset, q = expl(log_p + d);
            /* q e^-d = p: formed directly where e^-d could overflow and nothing cancels */
            difference = fabsl(d) < 0.5L ? q * expm1l(-d) : expl(log_p) - q;
            sum_phi += difference + q * d;
            entropy -= q * (log_p + d);
        }
        soft_grad[i] = row_scale * alpha * s_scale / t * difference;
        if (c->labels != NULL)
            hard_grad[i] = row_scale * (1.0L - alpha) * expl((ld)z[i] - log_z1);
    }
    *soft = sum_phi + p_out;
    if ((kd_divergence)c->p[KD_LOSS_PARAM_DIVERGENCE] == KD_DIVERGENCE_CROSS_ENTROPY)
        *soft += entropy;
    *hard = 0.0L;
    if (c->labels != NULL) {
        *hard = (z1max - (ld)z[label]) + log1pl(z1rest);
        hard_grad[label] -= row_scale * (1.0L - alpha);
    }
}

/* KL and cross-entropy rows against one logits teacher, with moderate inputs (|x| <= 1e4, T
 * in [1e-2, 1e2]: the reference's own rounding stays far below the tolerance): the values of
 * a NONE reduction within REFERENCE_TOLERANCE relative; each counted row's gradient within it
 * norm-wise, relative to the larger of the norms of its soft and hard parts (the float kernels
 * round each part; where they cancel, the sum keeps their absolute error, not its relative
 * one), with test_loss.c's floor: 1e-13 of the gradient of a unit mismatch. */
static void check_against_reference(const loss_case *c, const float *student, const float *values,
                                    const float *grad, size_t grad_stride)
{
    const float *teacher = c->teacher;
    const kd_divergence div = (kd_divergence)c->p[KD_LOSS_PARAM_DIVERGENCE];
    const kd_reduction reduction = (kd_reduction)c->p[KD_LOSS_PARAM_REDUCTION];
    if (teacher == NULL || !c->moderate || c->p[KD_LOSS_PARAM_TEACHER_KIND] != KD_TEACHER_LOGITS
        || (div != KD_DIVERGENCE_KL && div != KD_DIVERGENCE_CROSS_ENTROPY))
        return;
    const double t = c->p[KD_LOSS_PARAM_TEMPERATURE], alpha = c->p[KD_LOSS_PARAM_ALPHA];
    const double s_scale = c->p[KD_LOSS_PARAM_SCALE_T_SQUARED] != 0.0 ? t * t : 1.0;
    const ld row_scale = reduction == KD_REDUCTION_MEAN ? 1.0L / (ld)c->counted : 1.0L;
    const ld unit = row_scale * (ld)(alpha * s_scale / t + (1.0 - alpha));
    ld soft_want[MAX_CLASSES], hard_want[MAX_CLASSES];
    for (size_t r = 0; r < c->sh.rows; r++) {
        if (!counted_row(c, r))
            continue;
        const float *z = student + r * c->sh.in_stride, *v = teacher + r * c->teacher_stride;
        ld soft, hard;
        reference_row(c, z, v, c->labels != NULL ? c->labels[r] : 0, row_scale, &soft, &hard,
                      soft_want, hard_want);
        if (values != NULL && reduction == KD_REDUCTION_NONE) {
            const float *got = values + r * KD_LOSS_VALUE_COUNT;
            FUZZ_CHECK(fabsl((ld)got[KD_LOSS_VALUE_SOFT] - soft) <= REFERENCE_TOLERANCE * soft + 1e-30L,
                       "row %zu: soft %.9g, reference %.17Lg", r, (double)got[KD_LOSS_VALUE_SOFT],
                       soft);
            FUZZ_CHECK(fabsl((ld)got[KD_LOSS_VALUE_HARD] - hard) <= REFERENCE_TOLERANCE * hard + 1e-30L,
                       "row %zu: hard %.9g, reference %.17Lg", r, (double)got[KD_LOSS_VALUE_HARD],
                       hard);
        }
        if (grad == NULL)
            continue;
        ld error = 0.0L, soft_norm = 0.0L, hard_norm = 0.0L;
        for (size_t i = 0; i < c->sh.classes; i++) {
            const ld e = (ld)grad[r * grad_stride + i] - (soft_want[i] + hard_want[i]);
            error += e * e;
            soft_norm += soft_want[i] * soft_want[i];
            hard_norm += hard_want[i] * hard_want[i];
        }
        const ld norm = sqrtl(soft_norm > hard_norm ? soft_norm : hard_norm);
        FUZZ_CHECK(sqrtl(error) <= REFERENCE_TOLERANCE * norm + 1e-13L * unit,
                   "row %zu: gradient error %.3Lg, norm of the larger part %.6Lg", r,
                   sqrtl(error), norm);
    }
}

static void fuzz_labels(fuzz_stream *s, int32_t *labels, size_t classes, double ignore)
{
    for (size_t r = 0; r < MAX_ROWS; r++) {
        const uint8_t b = fuzz_u8(s);
        switch (b % 8) {
        case 0: labels[r] = (int32_t)ignore; break;
        case 1: labels[r] = -1; break;
        case 2: labels[r] = (int32_t)classes; break;
        default: labels[r] = classes == 0 ? 0 : (int32_t)(b % classes); break;
        }
    }
}

/* The student becomes the teacher shifted by a constant and rounded to float, after the
 * teacher's logits get bits below the shifted values' precision: the divergence is then only
 * that rounding, tiny, where forming v - z in float once lost all of it. */
static void shift_student(fuzz_stream *s, float *student, float *teacher, const loss_case *c)
{
    const float offset = (float)(int8_t)fuzz_u8(s) * (1000.0f / 7.0f);
    for (size_t r = 0; r < c->sh.rows && r < MAX_ROWS; r++)
        for (size_t i = 0; i < c->sh.classes && i < MAX_CLASSES; i++) {
            const size_t zi = r * c->sh.in_stride + i, vi = r * c->teacher_stride + i;
            if (zi >= BUFFER || vi >= BUFFER)
                return;
            teacher[vi] += (float)(int8_t)fuzz_u8(s) * 0x1p-20f;
            student[zi] = teacher[vi] + offset;
        }
}

static kd_status call_loss(kd_loss *loss, const loss_case *c, const float *student,
                           const members *m, float *values, float *grad, size_t grad_stride)
{
    if (c->ensemble)
        return kd_loss_compute_ensemble(loss, student, c->sh.in_stride, m == NULL ? NULL : m->pointers,
                                        m == NULL ? 0 : m->count, m == NULL ? NULL : m->weight_pointer,
                                        c->teacher_stride, c->labels, c->sh.rows, c->sh.classes,
                                        values, grad, grad_stride);
    return kd_loss_compute(loss, student, c->sh.in_stride, c->teacher, c->teacher_stride, c->labels,
                           c->sh.rows, c->sh.classes, values, grad, grad_stride);
}

static void fuzz_loss(fuzz_stream *s, int ensemble)
{
    static float student[BUFFER], teacher[BUFFER], grad[BUFFER], values[VALUES];
    static float grad2[BUFFER], values2[VALUES];
    static int32_t labels[MAX_ROWS];
    static members m;
    const uint8_t fail = fuzz_u8(s);
    fuzz_allocator counter = {0, 0, fail % 8 == 0 ? (size_t)(fail >> 3) : 0, 0, 0, 0};
    kd_allocator hook = fuzz_allocator_hook(&counter);
    static char sentinel;
    kd_loss *loss = (kd_loss *)(void *)&sentinel;
    kd_status status = kd_loss_create(&loss, &hook);
    if (status != KD_OK) {
        FUZZ_CHECK(status == KD_ERROR_OUT_OF_MEMORY && counter.injected, "create: %d", (int)status);
        FUZZ_CHECK(loss == (kd_loss *)(void *)&sentinel && counter.live == 0, "failed create");
        return;
    }
    fuzz_set_params(s, loss);

    loss_case c;
    memset(&c, 0, sizeof c);
    c.ensemble = ensemble;
    for (int p = 0; p < PARAM_COUNT; p++)
        kd_loss_get(loss, (kd_loss_param)p, &c.p[p]);
    c.sh = fuzz_shape(s, 0);
    c.teacher_stride = stride_for(s, c.sh.classes, &c.sh.narrow);
    const int probabilities = c.p[KD_LOSS_PARAM_TEACHER_KIND] == KD_TEACHER_PROBABILITIES;
    shape teacher_shape = c.sh;
    teacher_shape.in_stride = c.teacher_stride;
    fill(s, student, BUFFER);
    fill(s, teacher, BUFFER);
    if (probabilities)
        fill_probabilities(s, teacher, &teacher_shape, fuzz_u8(s) % 4 != 0);
    const int no_teacher = fuzz_u8(s) % 4 == 0;
    if (ensemble && !no_teacher)
        fuzz_members(s, &m, probabilities, &teacher_shape);
    c.teacher = no_teacher ? NULL : teacher; /* ensemble: marks that members are passed */
    fuzz_labels(s, labels, c.sh.classes, c.p[KD_LOSS_PARAM_IGNORE_LABEL]);
    c.labels = fuzz_u8(s) % 4 == 0 ? NULL : labels;
    const uint8_t outputs = fuzz_u8(s);
    float *v = outputs % 4 == 0 ? NULL : values, *g = (outputs >> 2) % 4 == 0 ? NULL : grad;
    if (!ensemble && !probabilities && fuzz_u8(s) % 4 == 1) /* 0: inputs that end earlier */
        shift_student(s, student, teacher, &c);
    const size_t grad_stride = c.sh.out_stride;
    /* A stride counts only for a matrix that is passed: the teacher's, the gradient's. */
    c.sh.narrow = c.sh.in_stride < c.sh.classes
                  || (c.teacher != NULL && c.teacher_stride < c.sh.classes)
                  || (g != NULL && grad_stride < c.sh.classes);
    kd_test_fill_sentinel(values, VALUES);
    kd_test_fill_sentinel(grad, BUFFER);
    const members *mp = ensemble && !no_teacher ? &m : NULL;
    classify(&c, student, mp);

    status = call_loss(loss, &c, student, mp, v, g, grad_stride);
    FUZZ_CHECK(status_fits(&c, status, counter.injected), "%s: status %d does not fit the arguments",
               ensemble ? "ensemble" : "compute", (int)status);
    if (!ensemble && status != KD_ERROR_OUT_OF_MEMORY)
        FUZZ_CHECK((status == KD_OK) == loss_valid(&c), "compute: status %d, arguments %s",
                   (int)status, loss_valid(&c) ? "valid" : "invalid");
    if (status != KD_OK) {
        FUZZ_CHECK(kd_test_is_sentinel(values, VALUES) && kd_test_is_sentinel(grad, BUFFER),
                   "outputs written on failure (status %d)", (int)status);
        kd_loss_destroy(loss);
        FUZZ_CHECK(counter.live == 0, "%zu blocks leaked", counter.live);
        return;
    }
    FUZZ_CHECK(shape_ok(&c.sh) && !c.null_pointer && !c.nonfinite && !c.all_masked && !c.bad_label,
               "KD_OK for invalid arguments");
    counter.fail_at = 0;
    if (ensemble) /* the parts that classify() predicts for the ensemble too */
        c.teacher = mp == NULL ? NULL : teacher;
    check_loss_outputs(&c, student, v, g, grad_stride, 1);
    if (!ensemble)
        check_against_reference(&c, student, v, g, grad_stride);

    /* Again with the gradient written over the student's logits (same stride): same bits. */
    if (g != NULL) {
        memcpy(grad2, student, sizeof student);
        kd_test_fill_sentinel(values2, VALUES);
        loss_case in_place = c;
        in_place.sh.out_stride = c.sh.in_stride;
        FUZZ_CHECK(call_loss(loss, &in_place, grad2, mp, v == NULL ? NULL : values2, grad2,
                             c.sh.in_stride) == KD_OK, "in-place call failed");
        float reference[BUFFER];
        kd_test_fill_sentinel(reference, BUFFER);
        FUZZ_CHECK(call_loss(loss, &in_place, student, mp, NULL, reference, c.sh.in_stride) == KD_OK,
                   "call failed");
        check_same_rows(grad2, reference, &c.sh, c.sh.in_stride, "in-place gradient");
        if (v != NULL)
            FUZZ_CHECK(memcmp(values, values2, sizeof values) == 0, "in-place values differ");
    }
    /* An ensemble of one member is kd_loss_compute, bit for bit. */
    if (!ensemble && c.teacher != NULL) {
        const float *one[1] = {teacher};
        const float weight = 0.5f;
        kd_test_fill_sentinel(values2, VALUES);
        kd_test_fill_sentinel(grad2, BUFFER);
        FUZZ_CHECK(kd_loss_compute_ensemble(loss, student, c.sh.in_stride, one, 1,
                                            outputs & 16 ? &weight : NULL, c.teacher_stride, c.labels,
                                            c.sh.rows, c.sh.classes, v == NULL ? NULL : values2,
                                            g == NULL ? NULL : grad2, grad_stride) == KD_OK,
                   "ensemble of one failed");
        FUZZ_CHECK(memcmp(values, values2, sizeof values) == 0 && memcmp(grad, grad2, sizeof grad) == 0,
                   "ensemble of one differs from kd_loss_compute");
    }
    kd_loss_destroy(loss);
    FUZZ_CHECK(counter.live == 0, "%zu blocks leaked", counter.live);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_stream s = {data, size};
    switch (fuzz_u8(&s) % 8) {
    case 0: fuzz_kernel(&s, SOFTMAX); break;
    case 1: fuzz_kernel(&s, LOG_SOFTMAX); break;
    case 2: fuzz_kernel(&s, SOFT_TARGETS); break;
    case 3: fuzz_kernel(&s, SOFT_TARGETS_STRIDED); break;
    case 4: fuzz_from_probabilities(&s); break;
    case 5: fuzz_ensemble(&s); break;
    case 6: fuzz_loss(&s, 0); break;
    default: fuzz_loss(&s, 1); break;
    }
    return 0;
}
