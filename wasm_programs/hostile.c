/*
 * hostile: a server that does, on request, what an attacker's guest would do, so
 * the end-to-end hostile suite can show each attack failing on a real testnet.
 *
 * Usage: hostile        (then one command per line on stdin)
 * Commands:
 *   symlink TARGET LINK   symlink(TARGET, LINK), e.g. "symlink kv_server /bin/evil"
 *   iovbomb N MIB         one writev(1, ...) of N iovecs, each over the same MIB MiB
 *   writeloop MIB         write(1, buf, MIB MiB) forever
 *   random MIB            one random_get of MIB MiB
 *   sleepspin MS          wait up to MS milliseconds for stdin (poll); when the
 *                         timeout, not input, wakes it: spin forever
 *   spin                  spin forever
 *   read PATH             open(PATH) for reading and print its first line
 *   write PATH TEXT       open(PATH, O_WRONLY|O_CREAT|O_TRUNC) and write TEXT
 * Output: "ok CMD" (with a result where there is one) or "err CMD: ERRNO" per
 * command. Exit: 0 at end of input.
 *
 * Built for wasm32-wasi only (it calls __wasi_random_get directly), so it is kept
 * out of the native builds like the escape probes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <wasi/api.h>

#include "errname.h"

static void spin(void) {
    volatile unsigned long long spins = 0;
    for (;;) {
        spins = spins + 1;
    }
}

static char *mib_buffer(long mib) {
    char *buf = malloc((size_t)mib << 20);
    if (buf) {
        memset(buf, 'x', (size_t)mib << 20);
    }
    return buf;
}

int main(void) {
    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        char cmd[32] = {0}, a[240] = {0}, b[240] = {0};
        if (sscanf(line, "%31s %239s %239s", cmd, a, b) < 1) {
            continue;
        }
        if (strcmp(cmd, "symlink") == 0) {
            if (symlink(a, b) == 0) {
                printf("ok symlink %s -> %s\n", b, a);
            } else {
                printf("err symlink: %s\n", errname(errno));
            }
        } else if (strcmp(cmd, "iovbomb") == 0) {
            long n = atol(a), mib = atol(b);
            char *buf = mib_buffer(mib);
            struct iovec *iov = calloc((size_t)n, sizeof *iov);
            if (!buf || !iov) {
                printf("err iovbomb: out of memory\n");
            } else {
                for (long i = 0; i < n; i++) {
                    iov[i].iov_base = buf;
                    iov[i].iov_len = (size_t)mib << 20;
                }
                fflush(stdout);
                ssize_t wrote = writev(1, iov, (int)n);
                if (wrote < 0) {
                    printf("err iovbomb: %s\n", errname(errno));
                } else {
                    printf("\nok iovbomb %zd\n", wrote);
                }
            }
            free(iov);
            free(buf);
        } else if (strcmp(cmd, "writeloop") == 0) {
            long mib = atol(a);
            char *buf = mib_buffer(mib);
            if (!buf) {
                printf("err writeloop: out of memory\n");
            } else {
                fflush(stdout);
                for (;;) {
                    if (write(1, buf, (size_t)mib << 20) < 0) {
                        printf("err writeloop: %s\n", errname(errno));
                        break;
                    }
                }
                free(buf);
            }
        } else if (strcmp(cmd, "random") == 0) {
            long mib = atol(a);
            char *buf = malloc((size_t)mib << 20);
            if (!buf) {
                printf("err random: out of memory\n");
            } else {
                __wasi_errno_t e = __wasi_random_get((uint8_t *)buf, (size_t)mib << 20);
                printf(e == 0 ? "ok random %ld MiB\n" : "err random: errno %ld\n",
                       e == 0 ? mib : (long)e);
                free(buf);
            }
        } else if (strcmp(cmd, "sleepspin") == 0) {
            long ms = atol(a);
            printf("ok sleepspin %ld\n", ms);
            fflush(stdout);
            /* Blocks until input or the deadline: a timer the chain must wake. */
            struct pollfd pfd = {.fd = 0, .events = POLLIN};
            if (poll(&pfd, 1, (int)ms) == 0) {
                spin();
            }
        } else if (strcmp(cmd, "read") == 0) {
            int fd = open(a, O_RDONLY);
            if (fd < 0) {
                printf("err read: %s\n", errname(errno));
            } else {
                char buf[128] = {0};
                ssize_t n = read(fd, buf, sizeof buf - 1);
                char *nl = strchr(buf, '\n');
                if (nl) *nl = 0;
                printf(n < 0 ? "err read: %s\n" : "ok read %s\n", n < 0 ? errname(errno) : buf);
                close(fd);
            }
        } else if (strcmp(cmd, "write") == 0) {
            int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0) {
                printf("err write: %s\n", errname(errno));
            } else {
                ssize_t n = write(fd, b, strlen(b));
                printf(n < 0 ? "err write: %s\n" : "ok write %s\n", n < 0 ? errname(errno) : a);
                close(fd);
            }
        } else if (strcmp(cmd, "spin") == 0) {
            fflush(stdout);
            spin();
        } else {
            printf("err %s: unknown command\n", cmd);
        }
        fflush(stdout);
    }
    return 0;
}
