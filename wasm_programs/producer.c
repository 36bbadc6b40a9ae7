/*
 * producer: first half of a pipeline pair (producer | consumer) that exercises
 * pipes between guest processes.
 *
 * Usage: producer [N] [PAYLOAD_BYTES]   (defaults 10 and 0)
 * Writes N lines "item <i> <payload>" for i = 1..N to stdout, where payload is
 * PAYLOAD_BYTES deterministic letters (none by default), flushing after every line
 * so the consumer can run while the producer is still writing. Then exits.
 * Exit: 0; 1 if writing stdout fails (e.g. EPIPE when the reader is gone).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errname.h"

static int parse_count(const char *arg, const char *what, unsigned long *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(arg, &end, 10);
    if (*arg == 0 || *end != 0 || errno != 0) {
        fprintf(stderr, "producer: %s must be a non-negative number, got '%s'\n", what, arg);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    unsigned long n = 10, payload = 0;
    if (argc > 1 && parse_count(argv[1], "N", &n) != 0) return 2;
    if (argc > 2 && parse_count(argv[2], "PAYLOAD_BYTES", &payload) != 0) return 2;
    if (payload > 1 << 20) {
        fprintf(stderr, "producer: PAYLOAD_BYTES must be at most 1048576\n");
        return 2;
    }
    char *pad = malloc(payload + 1);
    if (pad == NULL) {
        fprintf(stderr, "producer: out of memory\n");
        return 1;
    }
    for (unsigned long j = 0; j < payload; j++) pad[j] = (char)('a' + j % 26);
    pad[payload] = 0;

    for (unsigned long i = 1; i <= n; i++) {
        int ok = payload ? printf("item %lu %s\n", i, pad) >= 0 : printf("item %lu\n", i) >= 0;
        if (!ok || fflush(stdout) == EOF) {
            fprintf(stderr, "producer: writing item %lu failed: %s\n", i, errname(errno));
            free(pad);
            return 1;
        }
    }
    free(pad);
    return 0;
}
