/*
 * wasi_readdir: checks that directory listings are sorted and that positions from
 * telldir() stay valid (WASI readdir cookies), across many entries so the listing
 * spans several fd_readdir calls.
 *
 * Usage: wasi_readdir [DIR] [N]   (defaults "/data", 300)
 * Creates N files DIR/rd/fNNNN with long names, lists them, remembers telldir() at
 * every entry, seeks back to each remembered position and checks the entry there.
 * Output: "listed N entries sorted", "seekdir ok at K positions".
 * Exit: 0 on success; 1 with a "FAIL ..." line otherwise.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXN 2000

static char names[MAXN + 2][300];
static long pos[MAXN + 2];

int main(int argc, char **argv) {
    const char *base = argc > 1 ? argv[1] : "/data";
    int n = argc > 2 ? atoi(argv[2]) : 300;
    if (n < 1 || n > MAXN) return 2;
    char dir[512], path[1024];
    snprintf(dir, sizeof dir, "%s/rd", base);
    if (mkdir(dir, 0755) != 0) { printf("FAIL mkdir: %d\n", errno); return 1; }
    /* Created in reverse order so sorted output is not just creation order. */
    for (int i = n - 1; i >= 0; i--) {
        snprintf(path, sizeof path, "%s/f%04d_%0100d", dir, i, 0);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) { printf("FAIL create %d: %d\n", i, errno); return 1; }
        close(fd);
    }
    DIR *d = opendir(dir);
    if (!d) { printf("FAIL opendir: %d\n", errno); return 1; }
    int count = 0;
    for (;;) {
        long p = telldir(d);
        struct dirent *e = readdir(d);
        if (!e) break;
        if (count >= MAXN + 2) { printf("FAIL too many entries\n"); return 1; }
        pos[count] = p;
        snprintf(names[count], sizeof names[0], "%s", e->d_name);
        if (count > 0 && strcmp(names[count - 1], names[count]) >= 0) {
            printf("FAIL order: %s before %s\n", names[count - 1], names[count]);
            return 1;
        }
        count++;
    }
    if (count != n + 2 || strcmp(names[0], ".") || strcmp(names[1], "..")) {
        printf("FAIL listing: %d entries, first %s %s\n", count, names[0], names[1]);
        return 1;
    }
    printf("listed %d entries sorted\n", count);
    int checked = 0;
    for (int i = count - 1; i >= 0; i -= 7) {
        seekdir(d, pos[i]);
        struct dirent *e = readdir(d);
        if (!e || strcmp(e->d_name, names[i])) {
            printf("FAIL seekdir to %d: got %s, want %s\n", i, e ? e->d_name : "(end)", names[i]);
            return 1;
        }
        checked++;
    }
    closedir(d);
    printf("seekdir ok at %d positions\n", checked);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/f%04d_%0100d", dir, i, 0);
        if (unlink(path) != 0) { printf("FAIL unlink %d: %d\n", i, errno); return 1; }
    }
    if (rmdir(dir) != 0) { printf("FAIL rmdir: %d\n", errno); return 1; }
    return 0;
}
