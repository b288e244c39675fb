/* The loss of one row and its gradient. docs/math.md derives every formula used here.
 * SPDX-License-Identifier: MIT */
#include "loss_row.h"

#include <math.h>

#include "softmax_row.h"

/* The student's row at temperature t: s_i = (z_i - max) / t and log p_i = s_i - log_norm. */
typedef struct student_row {
    const float *z;
    size_t n;
    double t, max, log_norm;
} student_row;

static double shifted(const student_row *s, size_t i) { return ((double)s->z[i] - s->max) / s->t; }

static double log_p(const student_row *s, size_t i) { return shifted(s, i) - s->log_norm; }

/* e^-b - 1 + b >= 0, without the cancellation of the direct formula for small |b|. */
static double phi(double b)
{
    if (fabs(b) < 1e-3)
        return b * b * (0.5 - b * (1.0 / 6.0 - b * (1.0 / 24.0 - b / 120.0)));
    return expm1(-b) + b;
}

/* KL(P || Q) over a row, where
 *   P_i = w[i] (w[i] = 0 where P is 0),
 *   log P_i - log Q_i = a_i + kappa with a_i = sign * (u_i - s_i) and a row constant kappa,
 *   q_out = the mass of Q on the classes where P is 0.
 * With b_i = a_i - mean_P(a), KL = log sum_i P_i e^-b_i - log(1 - q_out), and
 * log sum P e^-b = B + log1p(sum P phi(b) - B) with B = sum P b ~ 0: every term of the sum is
 * >= 0, so the value keeps its relative accuracy even when it is tiny (high temperature), where
 * sum P (a + kappa) would cancel. Falls back to the latter where e^-b would overflow. */
static double kl_row(const student_row *s, const double *u, const double *w, double sign,
                     double kappa, double q_out)
{
    double w_sum = 0.0, wa_sum = 0.0;
    for (size_t i = 0; i < s->n; i++) {
        if (w[i] > 0.0) {
            w_sum += w[i];
            wa_sum += w[i] * sign * (u[i] - shifted(s, i));
        }
    }
    const double a_mean = wa_sum / w_sum;
    double f = 0.0, b_sum = 0.0, direct = 0.0;
    int overflow = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (w[i] > 0.0) {
            double a = sign * (u[i] - shifted(s, i));
            double b = a - a_mean;
            overflow |= -b > 700.0;
            f += w[i] * phi(b);
            b_sum += w[i] * b;
            direct += w[i] * (a + kappa);
        }
    }
    if (overflow || q_out > 0.5)
        return fmax(direct / w_sum, 0.0);
    return b_sum / w_sum + log1p((f - b_sum) / w_sum) - log1p(-q_out);
}

/* Forward KL(q || p); work receives q. Gradient: (p - q) / t. */
static double forward_kl(const student_row *s, const double *u, double c, double *work,
                         double *entropy)
{
    double p_out = 0.0, qu = 0.0, q_sum = 0.0;
    for (size_t i = 0; i < s->n; i++) {
        work[i] = exp(u[i] - c);
        if (work[i] > 0.0) {
            qu += work[i] * u[i];
            q_sum += work[i];
        } else {
            p_out += exp(log_p(s, i));
        }
    }
    *entropy = c - qu / q_sum;
    return kl_row(s, u, work, 1.0, s->log_norm - c, p_out);
}

/* Row constants the gradient pass needs besides p and q. The gradients of reverse KL and JSD
 * are p_j (x_j - sum_i p_i x_i) / t for some x; written relative to the student's top class
 * `top`, as p_j ((x_j - x_top) - sum_i p_i (x_i - x_top)), they do not cancel when p is nearly
 * one-hot (then x_top - sum p x is a tiny difference of large numbers). */
typedef struct soft_terms {
    size_t top;     /* index of the student's largest logit (s_top = 0) */
    double anchor;  /* reverse KL: u_top; JSD: r_top */
    double centre;  /* sum_i p_i (x_i - x_top) */
} soft_terms;

static size_t top_class(const student_row *s)
{
    for (size_t i = 0; i < s->n; i++)
        if ((double)s->z[i] == s->max)
            return i;
    return 0;
}

/* Reverse KL(p || q); work receives p. With e_i = (s_i - u_i) - (s_top - u_top) =
 * log(p_i / q_i) - log(p_top / q_top), the gradient is p_j (e_j - sum_i p_i e_i) / t. */
static double reverse_kl(const student_row *s, const double *u, double c, double *work,
                         soft_terms *terms)
{
    double q_out = 0.0;
    for (size_t i = 0; i < s->n; i++) {
        work[i] = exp(log_p(s, i));
        if (work[i] == 0.0)
            q_out += exp(u[i] - c);
    }
    terms->top = top_class(s);
    terms->anchor = u[terms->top];
    terms->centre = 0.0;
    for (size_t i = 0; i < s->n; i++)
        if (work[i] > 0.0)
            terms->centre += work[i] * (shifted(s, i) - u[i] + terms->anchor);
    return kl_row(s, u, work, -1.0, c - s->log_norm, q_out);
}

/* log(w e^x + (1 - w)) for w in [0, 1], without overflow or cancellation near x = 0. */
static double log_mix(double x, double w)
{
    if (x <= 1.0)
        return log1p(w * expm1(x));
    return x + log(w + (1.0 - w) * exp(-x));
}

/* Generalised Jensen-Shannon beta KL(q || m) + (1 - beta) KL(p || m), m = beta q + (1-beta) p,
 * with log(q_i / m_i) = -log_mix(log p_i - log q_i, 1 - beta) and
 * log(p_i / m_i) = -log_mix(log q_i - log p_i, beta): differences of exact log-ratios, so tiny
 * divergences keep their relative accuracy. work receives r_i = log(p_i / m_i) (0 where p_i = 0
 * or beta = 1, whose weight is then 0). Gradient: (1 - beta) p_j (r_j - sum_i p_i r_i) / t. */
static double jensen_shannon(const student_row *s, const double *u, double c, double beta,
                             double *work, soft_terms *terms)
{
    const double offset = c - s->log_norm; /* log p_i - log q_i = s_i - u_i + offset */
    double q_term = 0.0, p_term = 0.0;
    for (size_t i = 0; i < s->n; i++) {
        double p = exp(log_p(s, i)), q = exp(u[i] - c);
        double log_ratio = shifted(s, i) - u[i] + offset;
        if (beta > 0.0 && q > 0.0)
            q_term += q * -log_mix(log_ratio, 1.0 - beta);
        work[i] = (p > 0.0 && beta < 1.0) ? -log_mix(-log_ratio, beta) : 0.0;
        p_term += p * work[i];
    }
    terms->top = top_class(s);
    terms->anchor = work[terms->top];
    terms->centre = 0.0;
    for (size_t i = 0; i < s->n; i++) {
        double p = exp(log_p(s, i));
        if (p > 0.0)
            terms->centre += p * (work[i] - terms->anchor);
    }
    return beta * q_term + (1.0 - beta) * p_term;
}

/* sum_i (z_i - v_i)^2 / (2 C t^2) over the C unmasked classes; *scale = 1 / (C t^2). */
static double logit_mse(const student_row *s, const double *v, double *scale)
{
    size_t unmasked = 0;
    double sum = 0.0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->z[i] != -INFINITY) {
            double d = (double)s->z[i] - v[i];
            sum += d * d;
            unmasked++;
        }
    }
    *scale = 1.0 / ((double)unmasked * s->t * s->t);
    return 0.5 * sum * *scale;
}

void kd_loss_row(const kd_row_spec *spec, const float *z, size_t n, const double *teacher,
                 double teacher_log_norm, int32_t label, double *work, double *soft, double *hard,
                 float *grad)
{
    const double max = kd_row_max(z, n);
    student_row s = {z, n, spec->t, max, 0.0};
    student_row s1 = {z, n, 1.0, max, 0.0};
    double entropy = 0.0, mse_scale = 0.0;
    soft_terms terms = {0, 0.0, 0.0};

    *soft = 0.0;
    if (spec->has_teacher) {
        const double c = teacher_log_norm;
        if (spec->divergence != KD_DIVERGENCE_LOGIT_MSE)
            s.log_norm = kd_row_log_sum_exp(z, n, max, spec->t);
        switch (spec->divergence) {
        case KD_DIVERGENCE_KL:
            *soft = forward_kl(&s, teacher, c, work, &entropy);
            break;
        case KD_DIVERGENCE_CROSS_ENTROPY:
            *soft = forward_kl(&s, teacher, c, work, &entropy);
            *soft += entropy;
            break;
        case KD_DIVERGENCE_REVERSE_KL:
            *soft = reverse_kl(&s, teacher, c, work, &terms);
            break;
        case KD_DIVERGENCE_JENSEN_SHANNON:
            *soft = jensen_shannon(&s, teacher, c, spec->beta, work, &terms);
            break;
        case KD_DIVERGENCE_LOGIT_MSE:
            *soft = logit_mse(&s, teacher, &mse_scale);
            break;
        }
    }
    *hard = 0.0;
    if (spec->has_label) {
        s1.log_norm = kd_row_log_sum_exp(z, n, max, 1.0);
        *hard = -log_p(&s1, (size_t)label);
    }
    if (grad == NULL)
        return;

    /* The last pass: reads z_i, then writes grad_i (which may be z_i). */
    const double t = spec->t;
    for (size_t i = 0; i < n; i++) {
        double g = 0.0;
        if (spec->has_teacher && spec->soft_weight != 0.0) {
            double p = spec->divergence == KD_DIVERGENCE_LOGIT_MSE ? 0.0 : exp(log_p(&s, i));
            double d = 0.0;
            switch (spec->divergence) {
            case KD_DIVERGENCE_KL:
            case KD_DIVERGENCE_CROSS_ENTROPY:
                d = (p - work[i]) / t;
                break;
            case KD_DIVERGENCE_REVERSE_KL:
                if (p > 0.0)
                    d = p * (shifted(&s, i) - teacher[i] + terms.anchor - terms.centre) / t;
                break;
            case KD_DIVERGENCE_JENSEN_SHANNON:
                d = (1.0 - spec->beta) * p * (work[i] - terms.anchor - terms.centre) / t;
                break;
            case KD_DIVERGENCE_LOGIT_MSE:
                d = z[i] == -INFINITY ? 0.0 : ((double)z[i] - teacher[i]) * mse_scale;
                break;
            }
            g += spec->soft_weight * d;
        }
        if (spec->has_label && spec->hard_weight != 0.0)
            g += spec->hard_weight * (exp(log_p(&s1, i)) - (i == (size_t)label ? 1.0 : 0.0));
        grad[i] = (float)g;
    }
}
