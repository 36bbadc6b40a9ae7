/*
 * escape_dotdot: tries to leave the preopened directory with "..", absolute paths
 * and paths outside every preopen, through every kind of path-taking call. A
 * runtime passes if every attempt is refused while ordinary ".." inside the sandbox
 * still works.
 *
 * Usage: escape_dotdot [DIR]   (default "/data"; a writable preopened dir)
 * Output: one line per attempt: "refused <op> <path>: <ERRNO>" or "ALLOWED <op> <path>";
 *         "control <op> <path>: ok" for the legitimate ".." uses; then a summary line.
 * Exit: 0 only if every attempt was refused and every control worked; else 1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "probe.h"

static char g_dir[512];

static const char *in_dir(const char *rel) {
    static char bufs[4][1024];
    static int next;
    char *b = bufs[next++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", g_dir, rel);
    return b;
}

static void try_open(const char *path, int flags) {
    errno = 0;
    int fd = open(path, flags, 0644);
    expect_refused("open", path, fd < 0 ? -1 : fd, errno);
    if (fd >= 0) close(fd);
}

static void try_stat(const char *path) {
    struct stat st;
    errno = 0;
    expect_refused("stat", path, stat(path, &st), errno);
}

static void try_opendir(const char *path) {
    errno = 0;
    DIR *d = opendir(path);
    expect_refused("opendir", path, d ? 0 : -1, errno);
    if (d) closedir(d);
}

static void setup(void) {
    int fd = open(in_dir("escape.inside"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "inside\n", 7) != 7) {
        printf("escape_dotdot: cannot create %s: %s\n", in_dir("escape.inside"), errname(errno));
    }
    if (fd >= 0) close(fd);
    if (mkdir(in_dir("escape.sub"), 0755) != 0 && errno != EEXIST) {
        printf("escape_dotdot: cannot create %s: %s\n", in_dir("escape.sub"), errname(errno));
    }
}

static void controls(void) {
    char buf[16] = {0};
    const char *p = in_dir("escape.sub/../escape.inside");
    errno = 0;
    int fd = open(p, O_RDONLY);
    int ok = fd >= 0 && read(fd, buf, sizeof buf - 1) == 7 && strcmp(buf, "inside\n") == 0;
    expect_allowed("open", p, ok, errno);
    if (fd >= 0) close(fd);
    struct stat st;
    p = in_dir("./escape.sub/./../escape.inside");
    errno = 0;
    expect_allowed("stat", p, stat(p, &st) == 0 && st.st_size == 7, errno);
}

static void attempts(void) {
    static const char *read_paths[] = {
        "..", "../", "../..", "../../etc/passwd", "escape.sub/../..",
        "escape.sub/../../etc/passwd", "escape.sub/../../../../../../../../etc/passwd",
        "./../etc/passwd", "escape.sub/./.././../etc/passwd",
    };
    for (unsigned i = 0; i < sizeof read_paths / sizeof *read_paths; i++) {
        const char *p = in_dir(read_paths[i]);
        try_open(p, O_RDONLY);
        try_stat(p);
    }
    static const char *absolute[] = {"/etc/passwd", "/..", "/../etc/passwd", "/etc", "/proc/self/environ"};
    for (unsigned i = 0; i < sizeof absolute / sizeof *absolute; i++) {
        try_open(absolute[i], O_RDONLY);
        try_stat(absolute[i]);
    }
    try_open("../etc/passwd", O_RDONLY);
    try_open("..", O_RDONLY | O_DIRECTORY);
    try_opendir(in_dir(".."));
    try_opendir(in_dir("escape.sub/../.."));
    try_opendir("/etc");

    const char *outside = in_dir("../escaped.txt");
    try_open(outside, O_WRONLY | O_CREAT | O_TRUNC);
    errno = 0;
    expect_refused("mkdir", in_dir("../escaped.dir"), mkdir(in_dir("../escaped.dir"), 0755), errno);
    errno = 0;
    expect_refused("rename", in_dir("../stolen"),
                   rename(in_dir("escape.inside"), in_dir("../stolen")), errno);
    errno = 0;
    expect_refused("link", in_dir("../hardlink"),
                   link(in_dir("escape.inside"), in_dir("../hardlink")), errno);
    errno = 0;
    expect_refused("unlink", in_dir("../escape.target"), unlink(in_dir("../escape.target")),
                   errno);
    errno = 0;
    expect_refused("rmdir", in_dir(".."), rmdir(in_dir("..")), errno);
    errno = 0;
    expect_refused("symlink", in_dir("../escape.link"),
                   symlink("x", in_dir("../escape.link")), errno);
    errno = 0;
    expect_refused("chdir", in_dir(".."), chdir(in_dir("..")), errno);
}

static void cleanup(void) {
    unlink(in_dir("escape.inside"));
    rmdir(in_dir("escape.sub"));
}

int main(int argc, char **argv) {
    snprintf(g_dir, sizeof g_dir, "%s", argc > 1 ? argv[1] : "/data");
    setup();
    controls();
    attempts();
    cleanup();
    return probe_summary("escape_dotdot");
}
