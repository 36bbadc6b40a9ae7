/*
 * fd_exhaust: opens files until the runtime refuses, to prove the per-process fd
 * limit holds, is reported as EMFILE, and leaves the process usable.
 *
 * Usage: fd_exhaust [DIR]   (default "/data"; DIR must be writable)
 * Creates DIR/fd_exhaust.tmp, opens it read-only until open fails, then closes one
 * fd and checks that one more open succeeds again, then closes all and removes the
 * file.
 * Output: "fd_exhaust: opened N fds before EMFILE", "fd_exhaust: reopen after close ok",
 *         "fd_exhaust: all closed".
 * Exit: 0 if the refusal was EMFILE and recovery worked; 1 on any other errno;
 *       2 if no limit was hit within 1,000,000 opens.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errname.h"

#define MAX_OPENS 1000000

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/data";
    char path[1024];
    snprintf(path, sizeof path, "%s/fd_exhaust.tmp", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        printf("fd_exhaust: cannot create %s: %s\n", path, errname(errno));
        return 1;
    }
    close(fd);

    int *fds = malloc(sizeof(int) * MAX_OPENS);
    if (fds == NULL) {
        printf("fd_exhaust: cannot allocate the fd list\n");
        return 1;
    }
    int n = 0, err = 0;
    while (n < MAX_OPENS) {
        int f = open(path, O_RDONLY);
        if (f < 0) {
            err = errno;
            break;
        }
        fds[n++] = f;
    }
    if (n == MAX_OPENS) {
        printf("fd_exhaust: no limit within %d opens\n", MAX_OPENS);
        return 2;
    }
    printf("fd_exhaust: opened %d fds before %s\n", n, errname(err));
    if (err != EMFILE) {
        printf("fd_exhaust: expected EMFILE\n");
        return 1;
    }
    if (n == 0) {
        printf("fd_exhaust: no fd could be opened at all\n");
        return 1;
    }

    close(fds[--n]);
    int again = open(path, O_RDONLY);
    if (again < 0) {
        printf("fd_exhaust: reopen after close failed: %s\n", errname(errno));
        return 1;
    }
    fds[n++] = again;
    printf("fd_exhaust: reopen after close ok\n");

    int bad = 0;
    for (int i = 0; i < n; i++) bad += close(fds[i]) != 0;
    free(fds);
    if (unlink(path) != 0) {
        printf("fd_exhaust: cannot remove %s: %s\n", path, errname(errno));
        return 1;
    }
    if (bad) {
        printf("fd_exhaust: %d closes failed\n", bad);
        return 1;
    }
    printf("fd_exhaust: all closed\n");
    return 0;
}
