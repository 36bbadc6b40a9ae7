/*
 * poll_timeout: waits for stdin with poll() timeouts and sleeps with nanosleep, so
 * tests can check that timeouts fire against logical (block) time and that input
 * arriving before a deadline wakes the process.
 *
 * Usage: poll_timeout [TIMEOUT_MS] [ROUNDS]   (defaults 1000 and 3)
 * Each round polls stdin for TIMEOUT_MS and prints one of
 *   "round R: timeout after T ms"
 *   "round R: read N bytes after T ms: <bytes, non-printables as \xNN>"
 *   "round R: eof after T ms"            (and stops polling)
 * where T is the CLOCK_MONOTONIC time the poll took, in whole milliseconds. Then it
 * sleeps TIMEOUT_MS with poll(NULL, 0, ...) and with nanosleep and prints how long
 * each took: "poll sleep: T ms", "nanosleep: T ms".
 * Exit: 0; 1 if poll, read or nanosleep fails, or a timeout fired early.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "errname.h"

static long long monotonic_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static void print_bytes(const unsigned char *buf, ssize_t n) {
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] >= 0x20 && buf[i] < 0x7f && buf[i] != '\\') putchar(buf[i]);
        else printf("\\x%02x", buf[i]);
    }
}

static long parse_ms(const char *arg, const char *what) {
    char *end;
    long v = strtol(arg, &end, 10);
    if (*arg == 0 || *end != 0 || v < 0 || v > 86400000) {
        fprintf(stderr, "poll_timeout: %s must be 0..86400000, got '%s'\n", what, arg);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    long timeout = argc > 1 ? parse_ms(argv[1], "TIMEOUT_MS") : 1000;
    long rounds = argc > 2 ? parse_ms(argv[2], "ROUNDS") : 3;
    int status = 0;

    for (long r = 1; r <= rounds; r++) {
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        long long t0 = monotonic_us();
        int rc = poll(&pfd, 1, (int)timeout);
        long long took = (monotonic_us() - t0) / 1000;
        if (rc < 0) {
            printf("round %ld: poll failed: %s\n", r, errname(errno));
            return 1;
        }
        if (rc == 0) {
            printf("round %ld: timeout after %lld ms\n", r, took);
            if (took < timeout) {
                printf("FAIL round %ld: timeout fired early\n", r);
                status = 1;
            }
            fflush(stdout);
            continue;
        }
        unsigned char buf[256];
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0) {
            printf("round %ld: read failed: %s\n", r, errname(errno));
            return 1;
        }
        if (n == 0) {
            printf("round %ld: eof after %lld ms\n", r, took);
            fflush(stdout);
            break;
        }
        printf("round %ld: read %zd bytes after %lld ms: ", r, n, took);
        print_bytes(buf, n);
        printf("\n");
        fflush(stdout);
    }

    long long t0 = monotonic_us();
    if (poll(NULL, 0, (int)timeout) != 0) {
        printf("poll sleep failed: %s\n", errname(errno));
        return 1;
    }
    long long took = (monotonic_us() - t0) / 1000;
    printf("poll sleep: %lld ms\n", took);
    if (took < timeout) status = 1;

    struct timespec req = {timeout / 1000, (timeout % 1000) * 1000000L};
    t0 = monotonic_us();
    if (nanosleep(&req, NULL) != 0) {
        printf("nanosleep failed: %s\n", errname(errno));
        return 1;
    }
    took = (monotonic_us() - t0) / 1000;
    printf("nanosleep: %lld ms\n", took);
    if (took < timeout) status = 1;
    return status;
}
