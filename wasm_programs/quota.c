/*
 * quota: writes until the runtime's storage quota refuses, to prove quota
 * exhaustion is a clean ENOSPC (at the same byte on every validator) and that
 * freeing space makes the process usable again.
 *
 * Usage: quota [DIR] [MAX_BYTES]   (defaults "/data", 1 GiB)
 * Writes 64 KiB chunks to DIR/quota.0; when a file hits the per-file size limit
 * (EFBIG) it continues in DIR/quota.1, and so on, until a write fails with ENOSPC.
 * Then it removes its files and checks that a small write succeeds again.
 * Output: "quota: wrote B bytes in F files before ENOSPC",
 *         "quota: write after cleanup ok".
 * Exit: 0 on ENOSPC and recovery; 1 on any other errno;
 *       2 if MAX_BYTES were written without hitting a limit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errname.h"

#define CHUNK 65536
#define MAX_FILES 100000

static char g_chunk[CHUNK];

static void file_path(char *out, size_t cap, const char *dir, int index) {
    snprintf(out, cap, "%s/quota.%d", dir, index);
}

/* Writes one chunk; returns bytes written, -1 with errno when nothing was written. */
static long write_chunk(int fd) {
    size_t done = 0;
    while (done < CHUNK) {
        ssize_t n = write(fd, g_chunk + done, CHUNK - done);
        if (n < 0) return done ? (long)done : -1;
        done += (size_t)n;
    }
    return (long)done;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/data";
    unsigned long long max_bytes = 1ULL << 30;
    if (argc > 2) {
        char *end;
        max_bytes = strtoull(argv[2], &end, 10);
        if (*end != 0 || end == argv[2]) {
            fprintf(stderr, "quota: MAX_BYTES must be a number, got '%s'\n", argv[2]);
            return 2;
        }
    }
    for (int i = 0; i < CHUNK; i++) g_chunk[i] = (char)('a' + i % 26);

    char path[1024];
    unsigned long long total = 0;
    int files = 0, err = 0, fd = -1;
    while (total < max_bytes && files < MAX_FILES) {
        if (fd < 0) {
            file_path(path, sizeof path, dir, files);
            fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0) {
                err = errno;
                break;
            }
            files++;
        }
        long n = write_chunk(fd);
        if (n > 0) {
            total += (unsigned long long)n;
            if (n == CHUNK) continue;
            errno = 0; /* partial chunk: the next write reports why */
            n = write_chunk(fd);
            if (n > 0) continue;
        }
        if (errno == EFBIG) {
            close(fd);
            fd = -1;
            continue;
        }
        err = errno;
        break;
    }
    if (fd >= 0) close(fd);

    int status;
    if (err == 0) {
        printf("quota: wrote %llu bytes in %d files without hitting a limit\n", total, files);
        status = 2;
    } else {
        printf("quota: wrote %llu bytes in %d files before %s\n", total, files, errname(err));
        status = err == ENOSPC ? 0 : 1;
    }

    for (int i = 0; i < files; i++) {
        file_path(path, sizeof path, dir, i);
        if (unlink(path) != 0) {
            printf("quota: cannot remove %s: %s\n", path, errname(errno));
            return 1;
        }
    }
    file_path(path, sizeof path, dir, 0);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "ok\n", 3) != 3) {
        printf("quota: write after cleanup failed: %s\n", errname(errno));
        return 1;
    }
    close(fd);
    unlink(path);
    printf("quota: write after cleanup ok\n");
    return status;
}
