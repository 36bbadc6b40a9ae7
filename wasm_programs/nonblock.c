/*
 * nonblock: sets O_NONBLOCK on stdin with fcntl and reads, so tests can check that
 * a non-blocking read of an empty stdin returns EAGAIN at once instead of
 * suspending the process.
 *
 * Usage: nonblock [block]
 * Prints the stdin flags before and after F_SETFL, then the outcome of one read:
 *   "nonblock: read -> EAGAIN"  |  "nonblock: read N bytes: <data>"  |  "nonblock: read -> eof"
 * With "block", it then clears O_NONBLOCK again and does one blocking read, printing
 * "blocking: read N bytes: <data>" or "blocking: read -> eof".
 * Exit: 0 for any of those outcomes; 1 if fcntl fails, the flag does not stick, or
 *       read fails with anything but EAGAIN.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "errname.h"

/* Reads once and prints the outcome; returns 0 for data/eof/EAGAIN, 1 otherwise. */
static int read_once(const char *label) {
    char buf[256];
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0) {
        int err = errno;
        printf("%s: read -> %s\n", label, errname(err));
        return err == EAGAIN ? 0 : 1;
    }
    if (n == 0) {
        printf("%s: read -> eof\n", label);
        return 0;
    }
    printf("%s: read %zd bytes: %.*s%s", label, n, (int)n, buf, buf[n - 1] == '\n' ? "" : "\n");
    return 0;
}

int main(int argc, char **argv) {
    int then_block = argc > 1 && strcmp(argv[1], "block") == 0;
    int flags = fcntl(0, F_GETFL);
    if (flags < 0) {
        printf("nonblock: F_GETFL failed: %s\n", errname(errno));
        return 1;
    }
    printf("nonblock: stdin O_NONBLOCK before: %s\n", flags & O_NONBLOCK ? "set" : "clear");
    if (fcntl(0, F_SETFL, flags | O_NONBLOCK) != 0) {
        printf("nonblock: F_SETFL failed: %s\n", errname(errno));
        return 1;
    }
    flags = fcntl(0, F_GETFL);
    printf("nonblock: stdin O_NONBLOCK after: %s\n", flags >= 0 && (flags & O_NONBLOCK) ? "set" : "clear");
    if (flags < 0 || !(flags & O_NONBLOCK)) return 1;
    fflush(stdout);
    int status = read_once("nonblock");
    fflush(stdout);
    if (status != 0 || !then_block) return status;

    if (fcntl(0, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        printf("nonblock: clearing O_NONBLOCK failed: %s\n", errname(errno));
        return 1;
    }
    return read_once("blocking");
}
