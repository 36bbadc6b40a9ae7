/*
 * intkernel: an integer benchmark kernel: a byte-array sieve of Eratosthenes
 * (memory-bound loads/stores and branches) followed by 64-bit multiply/xor/rotate
 * hashing of every prime (ALU-bound), repeated for several rounds.
 *
 * Usage: intkernel [LIMIT] [ROUNDS]   (defaults 5000000 and 40: about 0.3-0.5 s
 *                                      natively at -O2)
 * Output: "primes below LIMIT: P", "checksum: C" (hex), "rounds: R".
 * The checksum depends only on LIMIT and ROUNDS, so native and wasm runs must match.
 * Exit: 0; 1 if the sieve buffer cannot be allocated; 2 on a bad argument.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* splitmix64's finalizer: every input bit affects every output bit. */
static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Marks composites in is_composite[0..limit); returns the number of primes. */
static unsigned long sieve(unsigned char *is_composite, unsigned long limit) {
    memset(is_composite, 0, limit);
    unsigned long count = 0;
    for (unsigned long i = 2; i < limit; i++) {
        if (is_composite[i]) continue;
        count++;
        /* i <= (limit-1)/i instead of i*i < limit: unsigned long is 32 bits on wasm32. */
        if (i > (limit - 1) / i) continue;
        for (unsigned long j = i * i; j < limit; j += i) is_composite[j] = 1;
    }
    return count;
}

static uint64_t hash_primes(const unsigned char *is_composite, unsigned long limit, uint64_t seed) {
    uint64_t h = mix(seed);
    for (unsigned long i = 2; i < limit; i++) {
        if (is_composite[i]) continue;
        h = rotl(h ^ mix(i + seed), 27) * 0x9E3779B97F4A7C15ULL + i;
    }
    return h;
}

static int parse(const char *arg, const char *what, unsigned long max, unsigned long *out) {
    char *end;
    unsigned long v = strtoul(arg, &end, 10);
    if (*arg == 0 || *end != 0 || v > max) {
        fprintf(stderr, "intkernel: %s must be a number up to %lu, got '%s'\n", what, max, arg);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    unsigned long limit = 5000000, rounds = 40;
    if (argc > 1 && parse(argv[1], "LIMIT", 1UL << 30, &limit) != 0) return 2;
    if (argc > 2 && parse(argv[2], "ROUNDS", 1000000, &rounds) != 0) return 2;
    unsigned char *buf = malloc(limit ? limit : 1);
    if (buf == NULL) {
        fprintf(stderr, "intkernel: cannot allocate %lu bytes for the sieve\n", limit);
        return 1;
    }
    uint64_t checksum = 0;
    unsigned long primes = 0;
    for (unsigned long r = 0; r < rounds; r++) {
        primes = sieve(buf, limit);
        checksum = mix(checksum ^ hash_primes(buf, limit, r) ^ primes);
    }
    free(buf);
    printf("primes below %lu: %lu\n", limit, primes);
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    printf("rounds: %lu\n", rounds);
    return 0;
}
