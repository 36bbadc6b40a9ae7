/*
 * recursion: unbounded recursion, to prove the runtime's stack limit is logical (the
 * same depth traps on every machine) rather than the host's native stack size.
 *
 * Usage: recursion [MAX_DEPTH]
 *   without MAX_DEPTH: recurses until the runtime stops it; prints nothing at all.
 *   with MAX_DEPTH:    recurses that deep, then prints "recursion: depth N checksum C"
 *                      and exits 0 (a control run that must succeed).
 *
 * Every frame keeps a value live across the recursive call and uses no address-taken
 * locals, so each level costs wasm (native) stack, not C shadow stack in linear
 * memory, and the compiler can neither turn it into a loop nor drop it.
 */
#include <stdio.h>
#include <stdlib.h>

static volatile unsigned long long g_limit = ~0ULL;

__attribute__((noinline)) static unsigned long long dive(unsigned long long depth) {
    if (depth >= g_limit) return depth;
    unsigned long long mixed = depth * 0x9E3779B97F4A7C15ULL;
    unsigned long long below = dive(depth + 1);
    return (below ^ mixed) + (mixed >> 7);
}

int main(int argc, char **argv) {
    if (argc > 1) {
        char *end;
        unsigned long long limit = strtoull(argv[1], &end, 10);
        if (*end != 0 || end == argv[1]) {
            fprintf(stderr, "recursion: MAX_DEPTH must be a number, got '%s'\n", argv[1]);
            return 2;
        }
        g_limit = limit;
    }
    unsigned long long sum = dive(0);
    printf("recursion: depth %llu checksum %llu\n", (unsigned long long)g_limit, sum);
    return 0;
}
