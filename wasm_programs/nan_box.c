/*
 * nan_box: a tiny NaN-boxing value stack, as dynamic-language interpreters use.
 *
 * Integers and "pointers" live in the payload of negative quiet NaNs (tag in the top
 * 16 bits); real doubles are stored as themselves. Values are copied through arrays,
 * locals, struct fields, function arguments and return values, and must keep every
 * bit; arithmetic on real doubles may make NaNs, which are stored beside them.
 * The program checks its own boxes and prints every slot's bits.
 *
 * Usage: nan_box    Output: "slot N bits", then "boxes intact: K/K". Exit: 0 when every
 * box survived, 1 otherwise.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define TAG_INT 0xfff9000000000000ULL
#define TAG_PTR 0xfffa000000000000ULL
#define TAG_MASK 0xffff000000000000ULL
#define SLOTS 24

typedef struct { double v; } value;

static double box(uint64_t tag, uint32_t payload) {
    uint64_t b = tag | payload;
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint64_t bits(double d) { uint64_t b; memcpy(&b, &d, sizeof b); return b; }

__attribute__((noinline)) static value pass_through(value v) { value w = v; return w; }

__attribute__((noinline)) static double pick(double a, double b, int which) {
    return which ? a : b;
}

static volatile double v_zero = 0.0;

int main(void) {
    value stack[SLOTS];
    value copy[SLOTS];
    int boxes = 0, intact = 0;
    for (int i = 0; i < SLOTS; i++) {
        switch (i % 4) {
        case 0: stack[i].v = box(TAG_INT, 1000u + (uint32_t)i); break;
        case 1: stack[i].v = box(TAG_PTR, 0x10000u * (uint32_t)i); break;
        case 2: stack[i].v = (double)i * 1.25; break;
        default: stack[i].v = v_zero / v_zero * (double)i; break; /* arithmetic NaN */
        }
    }
    for (int i = 0; i < SLOTS; i++) {
        value t = pass_through(stack[SLOTS - 1 - i]);
        double local = t.v;
        copy[i].v = pick(local, stack[i].v, i & 1);
    }
    memcpy(stack, copy, sizeof stack);
    for (int i = 0; i < SLOTS; i++) {
        uint64_t b = bits(stack[i].v);
        printf("slot %2d %016llx\n", i, (unsigned long long)b);
        int src = (i & 1) ? SLOTS - 1 - i : i;
        if (src % 4 == 0 || src % 4 == 1) {
            boxes++;
            uint64_t tag = src % 4 == 0 ? TAG_INT : TAG_PTR;
            uint32_t payload = src % 4 == 0 ? 1000u + (uint32_t)src : 0x10000u * (uint32_t)src;
            if ((b & TAG_MASK) == tag && (uint32_t)b == payload) intact++;
        }
    }
    printf("boxes intact: %d/%d\n", intact, boxes);
    return intact == boxes ? 0 : 1;
}
