/*
 * probe.h: bookkeeping shared by the sandbox-escape guests.
 *
 * Each attempt is recorded as refused (with its errno by name) or ALLOWED, so the
 * output shows exactly which path got through, and the exit status summarizes.
 */
#ifndef REPLICODE_PROBE_H
#define REPLICODE_PROBE_H

#include <errno.h>
#include <stdio.h>

#include "errname.h"

static int g_probes, g_allowed, g_control_failures;

/* An escape attempt: `rc` is the call's result, -1 meaning it was refused. */
__attribute__((unused)) static void expect_refused(const char *op, const char *path, long rc, int err) {
    g_probes++;
    if (rc == -1) {
        printf("refused %-8s %s: %s\n", op, path, errname(err));
    } else {
        g_allowed++;
        printf("ALLOWED %-8s %s\n", op, path);
    }
}

/* An escape attempt that must fail with one specific errno (e.g. ELOOP). */
__attribute__((unused)) static void expect_errno(const char *op, const char *path, long rc, int err, int want) {
    g_probes++;
    if (rc == -1 && err == want) {
        printf("refused %-8s %s: %s\n", op, path, errname(err));
    } else if (rc == -1) {
        g_allowed++;
        printf("WRONG   %-8s %s: %s, expected %s\n", op, path, errname(err), errname(want));
    } else {
        g_allowed++;
        printf("ALLOWED %-8s %s (expected %s)\n", op, path, errname(want));
    }
}

/* A legitimate operation inside the sandbox that must keep working. */
__attribute__((unused)) static void expect_allowed(const char *op, const char *path, int ok, int err) {
    if (ok) {
        printf("control %-8s %s: ok\n", op, path);
    } else {
        g_control_failures++;
        printf("CONTROL FAILED %s %s: %s\n", op, path, errname(err));
    }
}

/* Prints the summary line and returns the exit status: 0 only if all were refused. */
static int probe_summary(const char *prog) {
    printf("%s: %d attempts, %d refused, %d allowed, %d control failures\n", prog, g_probes,
           g_probes - g_allowed, g_allowed, g_control_failures);
    return g_allowed == 0 && g_control_failures == 0 ? 0 : 1;
}

#endif
