/*
 * memtouch: a long-running guest with a large, mostly idle heap, for measuring
 * process snapshot and state-digest cost when only a small part of memory changed
 * since the last digest (dirty-page tracking).
 *
 * Usage: memtouch [MIB]   (default 16)
 * At startup it allocates MIB MiB, writes every byte (so all of it is real state)
 * and prints "memtouch: ready, B bytes in P pages of 4096". Then for every input
 * line "N" it modifies N 4 KiB pages spread evenly over the buffer (the starting
 * page advances by one each time, so successive inputs touch different pages) and
 * prints "touched N pages, checksum C". An empty line touches 1% of the pages.
 * Malformed lines get "ERR <reason>".
 * Exit: 0 at EOF on stdin; 1 if the buffer cannot be allocated.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_BYTES 4096u

int main(int argc, char **argv) {
    unsigned long mib = 16;
    if (argc > 1) {
        char *end;
        mib = strtoul(argv[1], &end, 10);
        if (*argv[1] == 0 || *end != 0 || mib == 0 || mib > 2048) {
            fprintf(stderr, "memtouch: MIB must be 1..2048, got '%s'\n", argv[1]);
            return 2;
        }
    }
    size_t bytes = (size_t)mib << 20;
    unsigned char *buf = malloc(bytes);
    if (buf == NULL) {
        printf("memtouch: cannot allocate %zu bytes\n", bytes);
        return 1;
    }
    for (size_t i = 0; i < bytes; i++) buf[i] = (unsigned char)(i * 131 + (i >> 12));
    size_t pages = bytes / PAGE_BYTES;
    printf("memtouch: ready, %zu bytes in %zu pages of %u\n", bytes, pages, PAGE_BYTES);
    fflush(stdout);

    char line[64];
    unsigned long round = 0;
    uint64_t checksum = 0;
    while (fgets(line, sizeof line, stdin) != NULL) {
        size_t len = strlen(line);
        if (len > 0 && line[len - 1] == '\n') line[--len] = 0;
        size_t n = pages / 100;
        if (len > 0) {
            char *end;
            unsigned long v = strtoul(line, &end, 10);
            if (*end != 0 || v > pages) {
                printf("ERR expected a page count 0..%zu\n", pages);
                fflush(stdout);
                continue;
            }
            n = v;
        }
        round++;
        size_t stride = n ? pages / n : 1;
        for (size_t k = 0; k < n; k++) {
            size_t page = (round + k * stride) % pages;
            unsigned char *p = buf + page * PAGE_BYTES;
            p[0] ^= (unsigned char)round;
            p[PAGE_BYTES / 2] += 1;
            checksum = (checksum ^ (page * 0x9E3779B97F4A7C15ULL) ^ p[0]) * 0x100000001B3ULL;
        }
        printf("touched %zu pages, checksum %016llx\n", n, (unsigned long long)checksum);
        fflush(stdout);
    }
    free(buf);
    return 0;
}
