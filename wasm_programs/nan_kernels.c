/*
 * nan_kernels: float kernels with NaNs flowing through loops, accumulators, arrays,
 * function calls and qsort, the way real numeric code meets them (missing data as
 * NaN, a division by a zero weight). Prints sums, extremes and sorted data with
 * printf %a/%f (which show a NaN's sign) and with raw bits.
 *
 * Usage: nan_kernels    Output: a few result lines. Exit: 0.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 64

static volatile double v_zero = 0.0;

static uint64_t bits(double d) { uint64_t b; memcpy(&b, &d, sizeof b); return b; }

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    if (isnan(x)) return isnan(y) ? 0 : 1;
    if (isnan(y)) return -1;
    return (x > y) - (x < y);
}

__attribute__((noinline)) static double weighted_mean(const double *x, const double *w, int n) {
    double s = 0, sw = 0;
    for (int i = 0; i < n; i++) {
        s += x[i] * w[i];
        sw += w[i];
    }
    return s / sw;
}

int main(void) {
    double x[N], w[N], zeros[N];
    float f[N];
    for (int i = 0; i < N; i++) {
        x[i] = (i % 7 == 3) ? v_zero / v_zero : sin((double)i) * 10.0;
        w[i] = (i % 11 == 5) ? -v_zero / v_zero : 1.0 / (1.0 + i);
        zeros[i] = v_zero;
        f[i] = (float)(x[i] * 0.5);
    }
    double total = 0, mx = -INFINITY, mn = INFINITY;
    for (int i = 0; i < N; i++) {
        total += x[i];
        mx = fmax(mx, x[i]);
        mn = fmin(mn, x[i]);
        x[i] = x[i] * w[i] - sqrt(fabs(x[i]) - 1.0);
    }
    printf("total %a %016llx\n", total, (unsigned long long)bits(total));
    printf("max %f min %f\n", mx, mn);
    printf("mean %f %016llx\n", weighted_mean(x, w, N), (unsigned long long)bits(weighted_mean(x, w, N)));
    printf("zero-weight mean %f\n", weighted_mean(x, zeros, N));
    qsort(x, N, sizeof x[0], cmp);
    unsigned long long h = 1469598103934665603ULL;
    for (int i = 0; i < N; i++) h = (h ^ bits(x[i])) * 1099511628211ULL;
    printf("sorted hash %016llx first %f last %f\n", h, x[0], x[N - 1]);
    float fs = 0;
    for (int i = 0; i < N; i++) fs += f[i] * f[N - 1 - i];
    uint32_t fb;
    memcpy(&fb, &fs, sizeof fb);
    printf("float dot %08x %f\n", (unsigned)fb, (double)fs);
    return 0;
}
