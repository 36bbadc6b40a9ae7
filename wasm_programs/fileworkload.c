/*
 * fileworkload: a syscall-heavy benchmark: many small files created, written,
 * stat'ed, read, listed and removed, so per-call overhead of the filesystem layer
 * dominates, not bulk data copying.
 *
 * Usage: fileworkload DIR [N] [ROUNDS]   (defaults N=2000, ROUNDS=10: about 0.3-0.5 s
 *                                          natively on tmpfs)
 * Each round works in DIR/fileworkload.work: creates N files (64..575 bytes each,
 * deterministic content), stats them all, reads them all back and verifies them,
 * lists the directory, unlinks every file and removes the directory.
 * Output: "files: N", "rounds: R", "bytes: B", "checksum: C" (hex). The checksum
 * does not depend on readdir order, so native, wasmtime and replicode runs match.
 * Exit: 0; 1 on any failed call (named, with its errno) or content mismatch;
 *       2 on bad arguments.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errname.h"

#define MAX_SIZE 576

static char g_work[1024];

static void die(const char *what, const char *path) {
    printf("fileworkload: %s %s failed: %s\n", what, path, errname(errno));
    exit(1);
}

static uint64_t fnv1a(const void *data, size_t len, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001B3ULL;
    return h;
}

static size_t file_size(unsigned long i) { return 64 + (i * 37) % 512; }

static void file_content(unsigned long i, char *buf) {
    size_t n = file_size(i);
    for (size_t k = 0; k < n; k++) buf[k] = (char)('A' + (i + k * 7) % 58);
}

static const char *file_path(unsigned long i) {
    static char path[1100];
    snprintf(path, sizeof path, "%s/f%06lu", g_work, i);
    return path;
}

static void create_all(unsigned long n) {
    char buf[MAX_SIZE];
    for (unsigned long i = 0; i < n; i++) {
        const char *p = file_path(i);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) die("create", p);
        file_content(i, buf);
        if (write(fd, buf, file_size(i)) != (ssize_t)file_size(i)) die("write", p);
        if (close(fd) != 0) die("close", p);
    }
}

static uint64_t stat_all(unsigned long n, uint64_t *bytes) {
    uint64_t h = 0;
    struct stat st;
    for (unsigned long i = 0; i < n; i++) {
        const char *p = file_path(i);
        if (stat(p, &st) != 0) die("stat", p);
        if (!S_ISREG(st.st_mode) || (size_t)st.st_size != file_size(i)) {
            printf("fileworkload: %s has size %lld, expected %zu\n", p, (long long)st.st_size,
                   file_size(i));
            exit(1);
        }
        *bytes += (uint64_t)st.st_size;
        h = h * 31 + (uint64_t)st.st_size;
    }
    return h;
}

static uint64_t read_all(unsigned long n) {
    char want[MAX_SIZE], got[MAX_SIZE + 1];
    uint64_t h = 0xCBF29CE484222325ULL;
    for (unsigned long i = 0; i < n; i++) {
        const char *p = file_path(i);
        int fd = open(p, O_RDONLY);
        if (fd < 0) die("open", p);
        ssize_t len = read(fd, got, sizeof got);
        if (len < 0) die("read", p);
        if (close(fd) != 0) die("close", p);
        file_content(i, want);
        if ((size_t)len != file_size(i) || memcmp(got, want, (size_t)len) != 0) {
            printf("fileworkload: %s content differs from what was written\n", p);
            exit(1);
        }
        h = fnv1a(got, (size_t)len, h);
    }
    return h;
}

/* Sums a hash per name, so the result does not depend on the listing order. */
static uint64_t list_all(unsigned long n) {
    DIR *d = opendir(g_work);
    if (d == NULL) die("opendir", g_work);
    uint64_t h = 0;
    unsigned long count = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        h += fnv1a(e->d_name, strlen(e->d_name), 0xCBF29CE484222325ULL);
        count++;
    }
    if (errno != 0) die("readdir", g_work);
    closedir(d);
    if (count != n) {
        printf("fileworkload: listed %lu entries in %s, expected %lu\n", count, g_work, n);
        exit(1);
    }
    return h;
}

static void remove_all(unsigned long n) {
    for (unsigned long i = 0; i < n; i++) {
        const char *p = file_path(i);
        if (unlink(p) != 0) die("unlink", p);
    }
    if (rmdir(g_work) != 0) die("rmdir", g_work);
}

static int parse(const char *arg, const char *what, unsigned long *out) {
    char *end;
    unsigned long v = strtoul(arg, &end, 10);
    if (*arg == 0 || *end != 0 || v > 1000000) {
        fprintf(stderr, "fileworkload: %s must be a number up to 1000000, got '%s'\n", what, arg);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: fileworkload DIR [N] [ROUNDS]\n");
        return 2;
    }
    unsigned long n = 2000, rounds = 10;
    if (argc > 2 && parse(argv[2], "N", &n) != 0) return 2;
    if (argc > 3 && parse(argv[3], "ROUNDS", &rounds) != 0) return 2;
    snprintf(g_work, sizeof g_work, "%s/fileworkload.work", argv[1]);

    uint64_t checksum = 0, bytes = 0;
    for (unsigned long r = 0; r < rounds; r++) {
        if (mkdir(g_work, 0755) != 0) die("mkdir", g_work);
        create_all(n);
        uint64_t h = stat_all(n, &bytes);
        h ^= read_all(n) * 3;
        h ^= list_all(n) * 5;
        remove_all(n);
        unsigned char le[8]; /* explicit little-endian bytes: no host byte order in the hash */
        for (int k = 0; k < 8; k++) le[k] = (unsigned char)(h >> (8 * k));
        checksum = fnv1a(le, sizeof le, checksum ^ r);
    }
    printf("files: %lu\nrounds: %lu\nbytes: %llu\nchecksum: %016llx\n", n, rounds,
           (unsigned long long)bytes, (unsigned long long)checksum);
    return 0;
}
