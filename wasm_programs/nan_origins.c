/*
 * nan_origins: makes NaNs of every origin and prints their exact bits, so a
 * difference in NaN sign or payload between two runs shows up on stdout.
 *
 * Origins: 0/0, sqrt(-1), inf-inf, inf*0, signalling NaNs read from memory and then
 * used in arithmetic, copysign, fmin/fmax, float<->double promote/demote, negation
 * and fabs of arithmetic NaNs, NaNs through libm (fmod, pow, log).
 * Inputs come through `volatile` so clang cannot fold the arithmetic at compile time.
 *
 * Usage: nan_origins        Output: one "name bits" line per case, then "cases: N".
 * Exit: 0.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static volatile double v_zero = 0.0, v_one = 1.0, v_minus_one = -1.0, v_inf = INFINITY;
static volatile float vf_zero = 0.0f, vf_inf = INFINITY;
/* Signalling and payload NaNs as a NaN-boxing runtime would store them. */
static volatile uint64_t v_snan_bits = 0x7ff0000000000001ULL;
static volatile uint64_t v_neg_payload_bits = 0xfff4000000001234ULL;
static volatile uint32_t vf_snan_bits = 0x7f800001U;

static int cases;

static double from_bits(uint64_t b) { double d; memcpy(&d, &b, sizeof d); return d; }
static float from_bits32(uint32_t b) { float f; memcpy(&f, &b, sizeof f); return f; }

static void show(const char *name, double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    printf("%-22s %016llx %s\n", name, (unsigned long long)b, signbit(d) ? "neg" : "pos");
    cases++;
}

static void show32(const char *name, float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    printf("%-22s %08x\n", name, (unsigned)b);
    cases++;
}

/* Kept out of line so the NaN crosses a call and a return. */
__attribute__((noinline)) static double sub(double a, double b) { return a - b; }

int main(void) {
    double zero = v_zero, inf = v_inf;
    double snan = from_bits(v_snan_bits);
    double neg_payload = from_bits(v_neg_payload_bits);
    float fzero = vf_zero, finf = vf_inf;
    float fsnan = from_bits32(vf_snan_bits);

    show("zero/zero", zero / zero);
    show("sqrt(-1)", sqrt(v_minus_one));
    show("inf-inf", inf - inf);
    show("inf*0", inf * zero);
    show("sub(inf,inf)", sub(inf, inf));
    show("-(0/0)", -(zero / zero));
    show("fabs(-(0/0))", fabs(-(zero / zero)));
    show("snan (copied)", snan);
    show("snan+1", snan + v_one);
    show("neg_payload*2", neg_payload * 2.0);
    show("copysign(0/0,-1)", copysign(zero / zero, v_minus_one));
    show("copysign(1,0/0)", copysign(v_one, zero / zero));
    show("copysign(1,-(0/0))", copysign(v_one, -(zero / zero)));
    show("fmin(nan,1)", fmin(zero / zero, v_one));
    show("fmax(snan,nan)", fmax(snan, -(zero / zero)));
    show("__builtin_fmin", __builtin_fmin(snan + 0.0, v_one));
    show("promote(f 0/0)", (double)(fzero / fzero));
    show("promote(f snan)", (double)fsnan);
    show32("demote(snan)", (float)snan);
    show32("demote(neg payload)", (float)neg_payload);
    show32("f inf-inf", finf - finf);
    show32("f -(0/0)", -(fzero / fzero));
    show("fmod(1,0)", fmod(v_one, zero));
    show("pow(-1,0.5)", pow(v_minus_one, 0.5));
    show("log(-1)", log(v_minus_one));
    show("nan in sum", (zero / zero) + snan + neg_payload);
    show("neg_payload-neg_payload", neg_payload - neg_payload);
    printf("cases: %d\n", cases);
    return 0;
}
