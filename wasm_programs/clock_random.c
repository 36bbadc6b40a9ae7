/*
 * clock_random: shows what a guest sees of time and randomness, which under the
 * runtime must come from consensus (block time, a seed), never from the host.
 *
 * Usage: clock_random [SLEEP_MS]   (default 10)
 * Prints: realtime (seconds.nanoseconds and as UTC), monotonic, the resolution of
 * both clocks, time(NULL), two 16-byte getentropy draws in hex, then sleeps
 * SLEEP_MS with nanosleep (a poll_oneoff clock subscription) and prints the
 * monotonic time that passed.
 * Exit: 0; 1 if a call fails, the two draws are equal, or the sleep took less than
 *       SLEEP_MS of monotonic time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "errname.h"

static int g_failed;

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, errname(errno));
    g_failed = 1;
}

static long long now_ns(clockid_t clock, const char *name) {
    struct timespec ts;
    if (clock_gettime(clock, &ts) != 0) {
        fail(name);
        return -1;
    }
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void print_clock(clockid_t clock, const char *name) {
    struct timespec ts, res;
    if (clock_gettime(clock, &ts) != 0) {
        fail(name);
        return;
    }
    printf("%s: %lld.%09ld\n", name, (long long)ts.tv_sec, (long)ts.tv_nsec);
    if (clock_getres(clock, &res) != 0) {
        fail("clock_getres");
        return;
    }
    printf("%s resolution: %lld.%09ld\n", name, (long long)res.tv_sec, (long)res.tv_nsec);
}

static int draw(const char *label, unsigned char out[16]) {
    if (getentropy(out, 16) != 0) {
        fail("getentropy");
        return -1;
    }
    printf("%s:", label);
    for (int i = 0; i < 16; i++) printf(" %02x", out[i]);
    printf("\n");
    return 0;
}

int main(int argc, char **argv) {
    long sleep_ms = 10;
    if (argc > 1) {
        char *end;
        sleep_ms = strtol(argv[1], &end, 10);
        if (*argv[1] == 0 || *end != 0 || sleep_ms < 0 || sleep_ms > 3600000) {
            fprintf(stderr, "clock_random: SLEEP_MS must be 0..3600000, got '%s'\n", argv[1]);
            return 2;
        }
    }

    print_clock(CLOCK_REALTIME, "realtime");
    time_t t = time(NULL);
    struct tm utc;
    char iso[64];
    if (gmtime_r(&t, &utc) && strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &utc)) {
        printf("time(NULL): %lld = %s\n", (long long)t, iso);
    } else {
        fail("gmtime_r");
    }
    print_clock(CLOCK_MONOTONIC, "monotonic");

    unsigned char a[16], b[16];
    if (draw("entropy 1", a) == 0 && draw("entropy 2", b) == 0 && memcmp(a, b, 16) == 0) {
        printf("FAIL getentropy: two draws are identical\n");
        g_failed = 1;
    }

    long long before = now_ns(CLOCK_MONOTONIC, "monotonic");
    struct timespec req = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
    if (nanosleep(&req, NULL) != 0) fail("nanosleep");
    long long after = now_ns(CLOCK_MONOTONIC, "monotonic");
    long long slept = after - before;
    printf("nanosleep %ld ms: monotonic advanced %lld ns\n", sleep_ms, slept);
    if (slept < sleep_ms * 1000000LL) {
        printf("FAIL nanosleep: returned early\n");
        g_failed = 1;
    }
    print_clock(CLOCK_REALTIME, "realtime after sleep");
    return g_failed;
}
