/*
 * escape_symlink: tries to leave the preopened directory through symbolic links
 * (absolute targets, ".." chains, links to directories above the sandbox) and
 * checks that symlink loops end in ELOOP. A runtime passes if every attempt is
 * refused while links that stay inside keep working.
 *
 * Usage: escape_symlink [DIR]   (default "/data"; a writable preopened dir)
 * Works in DIR/escape_symlink.work (removed at the end).
 * Output: one line per attempt ("refused ...", "ALLOWED ...", "WRONG ..." when a
 *         loop fails with something other than ELOOP), "control ..." lines for
 *         the in-sandbox links, then a summary line.
 * Exit: 0 only if every attempt was refused (loops with ELOOP) and every control
 *       worked; else 1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "probe.h"

static char g_work[512];

static const char *W(const char *rel) {
    static char bufs[4][1024];
    static int next;
    char *b = bufs[next++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", g_work, rel);
    return b;
}

/* Creating a link is not an escape by itself (it is only a string); following it is.
 * A runtime may still refuse to create links with absolute targets: that counts as
 * refused, and the follow-up attempts then fail with ENOENT, also refused. */
static void make_link(const char *target, const char *name) {
    if (symlink(target, W(name)) == 0) {
        printf("created link   %s -> %s\n", name, target);
    } else {
        printf("refused create %s -> %s: %s\n", name, target, errname(errno));
    }
}

static void try_open(const char *rel, int flags) {
    const char *p = W(rel);
    errno = 0;
    int fd = open(p, flags, 0644);
    expect_refused("open", p, fd < 0 ? -1 : fd, errno);
    if (fd >= 0) close(fd);
}

static void try_stat(const char *rel) {
    const char *p = W(rel);
    struct stat st;
    errno = 0;
    expect_refused("stat", p, stat(p, &st), errno);
}

static void try_opendir(const char *rel) {
    const char *p = W(rel);
    errno = 0;
    DIR *d = opendir(p);
    expect_refused("opendir", p, d ? 0 : -1, errno);
    if (d) closedir(d);
}

static void expect_loop(const char *rel) {
    const char *p = W(rel);
    struct stat st;
    errno = 0;
    int fd = open(p, O_RDONLY);
    expect_errno("open", p, fd < 0 ? -1 : fd, errno, ELOOP);
    if (fd >= 0) close(fd);
    errno = 0;
    expect_errno("stat", p, stat(p, &st), errno, ELOOP);
}

static int read_is(const char *rel, const char *want) {
    char buf[64] = {0};
    int fd = open(W(rel), O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n == (ssize_t)strlen(want) && strcmp(buf, want) == 0;
}

static const char *k_links[][2] = {
    {"/etc/passwd", "abs_file"},
    {"/", "abs_root"},
    {"/etc", "abs_dir"},
    {"..", "up1"},
    {"../..", "up2"},
    {"../../etc/passwd", "up2_file"},
    {"../../../../../../../../../../etc/passwd", "deep"},
    {"sub/../../..", "mixed"},
    {"up2", "via_link"},
    {"loopB", "loopA"},
    {"loopA", "loopB"},
    {"self", "self"},
    {"self_dir/x", "self_dir"},
    {"target.txt", "good"},
    {"../escape_symlink.work/target.txt", "good_roundtrip"},
    {"..", "sub/up"},
};

static void setup(void) {
    if (mkdir(g_work, 0755) != 0 && errno != EEXIST) {
        printf("escape_symlink: cannot create %s: %s\n", g_work, errname(errno));
    }
    mkdir(W("sub"), 0755);
    int fd = open(W("target.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "inside\n", 7) != 7) {
        printf("escape_symlink: cannot create target.txt: %s\n", errname(errno));
    }
    if (fd >= 0) close(fd);
    for (unsigned i = 0; i < sizeof k_links / sizeof *k_links; i++) {
        make_link(k_links[i][0], k_links[i][1]);
    }
}

static int link_exists(const char *rel) {
    struct stat st;
    return lstat(W(rel), &st) == 0;
}

/* A link that stays inside must work if the runtime let it be created; refusing to
 * create links with ".." in them is a stricter, equally safe policy. */
static void control_if_created(const char *link, const char *rel) {
    if (!link_exists(link)) {
        printf("control %-8s %s: skipped, link %s not created\n", "open", W(rel), link);
        return;
    }
    errno = 0;
    expect_allowed("open", W(rel), read_is(rel, "inside\n"), errno);
}

static void controls(void) {
    errno = 0;
    expect_allowed("open", W("good"), read_is("good", "inside\n"), errno);
    control_if_created("good_roundtrip", "good_roundtrip");
    control_if_created("sub/up", "sub/up/target.txt");
    char buf[64];
    errno = 0;
    ssize_t n = readlink(W("abs_file"), buf, sizeof buf);
    /* Reading a link's text is no escape; it is only checked when the link exists. */
    if (n >= 0) {
        expect_allowed("readlink", W("abs_file"), n == 11 && !memcmp(buf, "/etc/passwd", 11),
                       errno);
    }
}

static void attempts(void) {
    try_open("abs_file", O_RDONLY);
    try_stat("abs_file");
    try_open("abs_file", O_WRONLY | O_APPEND);
    try_open("abs_root/etc/passwd", O_RDONLY);
    try_opendir("abs_root");
    try_opendir("abs_dir");
    try_open("abs_dir/passwd", O_RDONLY);
    try_opendir("up2");
    try_open("up2/etc/passwd", O_RDONLY);
    try_open("up2_file", O_RDONLY);
    try_open("deep", O_RDONLY);
    try_open("mixed", O_RDONLY | O_DIRECTORY);
    try_opendir("via_link");
    try_open("via_link/etc/passwd", O_RDONLY);
    /* "up1/.." is only outside when up1 really is a link to ".."; if its creation was
     * refused the path names the work dir itself, lexically, and opening it is fine. */
    if (link_exists("up1")) {
        try_open("up1/..", O_RDONLY | O_DIRECTORY);
        if (link_exists("sub/up")) try_open("sub/up/up1/..", O_RDONLY | O_DIRECTORY);
    }
    try_open("up1/../etc/passwd", O_RDONLY);
    try_open("up2/escaped.txt", O_WRONLY | O_CREAT | O_TRUNC);
    const char *p = W("up2/escaped.dir");
    errno = 0;
    expect_refused("mkdir", p, mkdir(p, 0755), errno);
    p = W("up2/escaped.link");
    errno = 0;
    expect_refused("symlink", p, symlink("x", p), errno);
    p = W("up2/stolen");
    errno = 0;
    expect_refused("rename", p, rename(W("target.txt"), p), errno);

    expect_loop("loopA");
    expect_loop("self");
    expect_loop("self_dir");
}

static void cleanup(void) {
    for (unsigned i = 0; i < sizeof k_links / sizeof *k_links; i++) unlink(W(k_links[i][1]));
    unlink(W("target.txt"));
    rmdir(W("sub"));
    if (rmdir(g_work) != 0) {
        printf("escape_symlink: cannot remove %s: %s\n", g_work, errname(errno));
    }
}

int main(int argc, char **argv) {
    snprintf(g_work, sizeof g_work, "%s/escape_symlink.work", argc > 1 ? argv[1] : "/data");
    setup();
    controls();
    attempts();
    cleanup();
    return probe_summary("escape_symlink");
}
