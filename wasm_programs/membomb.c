/*
 * membomb: takes all the memory it can, to prove the runtime's memory limit is
 * deterministic: growth past it fails the same way on every validator, and the
 * host is never at risk.
 *
 * Usage: membomb [CHUNK_KIB]   (default 1024)
 * Phase 1 mallocs CHUNK_KIB blocks until malloc returns NULL and writes to every
 *   page of each block (so the memory is really used), then prints
 *   "membomb: malloc got N bytes in K blocks".
 *   Natively it stops at 256 MiB so a host test run cannot hurt the machine.
 * Phase 2 (wasm only) calls memory.grow one page at a time until it fails, touches
 *   each new page, and prints "membomb: memory.grow got P more pages, memory now M
 *   pages". Natively phase 2 is skipped.
 * Exit: 0 when both phases ended in a clean refusal. If the runtime traps instead
 *   of refusing, nothing after the trap is printed and the runtime reports the trap.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 65536u
#define NATIVE_CAP (256ULL << 20)

/* Writes one byte per 4 KiB so every page of the block is committed. */
static void touch(volatile unsigned char *p, size_t len, unsigned char v) {
    for (size_t off = 0; off < len; off += 4096) p[off] = v;
    if (len) p[len - 1] = v;
}

static void malloc_phase(size_t chunk) {
    unsigned long long total = 0;
    unsigned long blocks = 0;
    for (;;) {
        unsigned char *p = malloc(chunk);
        if (p == NULL) break;
        touch(p, chunk, (unsigned char)blocks);
        total += chunk;
        blocks++;
#ifndef __wasm__
        /* Native runs only test the logic: never take a real host's memory. */
        if (total >= NATIVE_CAP) {
            printf("membomb: native cap of %llu bytes reached\n", NATIVE_CAP);
            break;
        }
#endif
    }
    printf("membomb: malloc got %llu bytes in %lu blocks\n", total, blocks);
    fflush(stdout);
}

#ifdef __wasm__
static void grow_phase(void) {
    unsigned long grown = 0;
    for (;;) {
        long old = (long)__builtin_wasm_memory_grow(0, 1);
        if (old < 0) break;
        touch((volatile unsigned char *)(uintptr_t)((unsigned long)old * PAGE), PAGE, 0xAB);
        grown++;
    }
    printf("membomb: memory.grow got %lu more pages, memory now %lu pages\n", grown,
           (unsigned long)__builtin_wasm_memory_size(0));
}
#endif

int main(int argc, char **argv) {
    size_t chunk_kib = 1024;
    if (argc > 1) {
        char *end;
        chunk_kib = strtoul(argv[1], &end, 10);
        if (*end != 0 || chunk_kib == 0) {
            fprintf(stderr, "membomb: CHUNK_KIB must be a positive number, got '%s'\n",
                    argv[1]);
            return 2;
        }
    }
    malloc_phase(chunk_kib * 1024);
#ifdef __wasm__
    grow_phase();
#endif
    return 0;
}
