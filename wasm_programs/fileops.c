/*
 * fileops: exercises every filesystem call a C program can reach through wasi-libc
 * and checks each result itself, so a runtime's filesystem can be validated by one
 * guest run instead of by reading its output.
 *
 * Usage: fileops [-k] [BASE_DIR]   (default "/data"; must be inside a preopened dir)
 *        -k keeps going after a failure and reports all of them (exit 1 at the end).
 * Works in BASE_DIR/fileops.work (removed first if left over, removed at the end).
 * Output: "ok <check>" per passed check, then "fileops: N checks passed".
 * Exit: 0 if all passed; 1 at the first failure, after printing
 *       "FAIL <check>: <what was expected>, got <result> errno=<NAME>".
 *
 * Expectations follow POSIX as Linux implements it (e.g. unlink of a directory is
 * EISDIR, rename of a directory over a non-empty one is ENOTEMPTY, a 299-byte name
 * exceeds NAME_MAX 255 and a 5000-byte path exceeds PATH_MAX 4096: ENAMETOOLONG).
 * Two checks differ by build: under WASI readdir order must be sorted by name (the
 * runtime guarantees it) and dup2 is done through fd_renumber; natively only the set
 * of names is checked and dup2 is used.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#ifdef __wasi__
#include <wasi/api.h>
#endif

#include "errname.h"

static int g_checks;
static int g_failures;
static int g_keep_going; /* -k: report every failure instead of stopping at the first */
static char g_work[1024];
static const char *g_base;

static int base_is_absolute(void) { return g_base[0] == '/'; }

/* ---- reporting -------------------------------------------------------------- */

static void pass(const char *name) {
    g_checks++;
    printf("ok %s\n", name);
}

static void fail(const char *name, const char *expected, long got, int err) {
    printf("FAIL %s: expected %s, got %ld errno=%s (%s)\n", name, expected, got,
           errname(err), strerror(err));
    fflush(stdout);
    g_failures++;
    if (!g_keep_going) exit(1);
}

static void fail_cond(const char *name, const char *cond, int last_err) {
    printf("FAIL %s: condition false: %s (last errno=%s)\n", name, cond, errname(last_err));
    fflush(stdout);
    g_failures++;
    if (!g_keep_going) exit(1);
}

static void fail_eq(const char *name, const char *what, long long got, long long want) {
    printf("FAIL %s: %s is %lld, expected %lld (errno=%s)\n", name, what, got, want,
           errname(errno));
    fflush(stdout);
    g_failures++;
    if (!g_keep_going) exit(1);
}

/* A timestamp as nanoseconds since the epoch. */
static long long ns(struct timespec ts) { return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec; }

/* The call must succeed (not return -1). Evaluates to its result. */
#define MUST(name, expr)                                                         \
    ({                                                                           \
        errno = 0;                                                               \
        long r_ = (long)(expr);                                                  \
        if (r_ == -1) fail(name, "success", r_, errno);                          \
        else pass(name);                                                         \
        r_;                                                                      \
    })

/* The call must fail with exactly errno `want`. */
#define MUST_FAIL(name, expr, want)                                              \
    do {                                                                         \
        errno = 0;                                                               \
        long r_ = (long)(expr);                                                  \
        if (r_ != -1 || errno != (want)) fail(name, "-1/" #want, r_, errno);     \
        else pass(name);                                                         \
    } while (0)

/* A condition on values already computed. */
#define CHECK(name, cond)                                                        \
    do {                                                                         \
        if (!(cond)) fail_cond(name, #cond, errno);                              \
        else pass(name);                                                         \
    } while (0)

/* A value that must equal an expected one; both are printed on failure. */
#define CHECK_EQ(name, got, want)                                                \
    do {                                                                         \
        long long g_ = (long long)(got), w_ = (long long)(want);                 \
        if (g_ != w_) fail_eq(name, #got, g_, w_);                               \
        else pass(name);                                                         \
    } while (0)

/* posix_fadvise/posix_fallocate return an error number instead of setting errno. */
#define MUST_RC(name, expr, want)                                                \
    do {                                                                         \
        int rc_ = (expr);                                                        \
        if (rc_ != (want)) fail(name, #want, rc_, rc_);                          \
        else pass(name);                                                         \
    } while (0)

/* ---- helpers ---------------------------------------------------------------- */

/* Path of `rel` inside the work dir; eight rotating buffers so a call may take two. */
static const char *P(const char *rel) {
    static char bufs[8][2048];
    static int next;
    char *b = bufs[next++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", g_work, rel);
    return b;
}

static void write_file(const char *name, const char *path, const char *data) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fail(name, "open for writing", fd, errno);
        return;
    }
    size_t len = strlen(data);
    ssize_t n = write(fd, data, len);
    if (n != (ssize_t)len) fail(name, "full write", (long)n, errno);
    if (close(fd) != 0) fail(name, "close", -1, errno);
}

/* Reads up to cap-1 bytes of a file into buf, NUL-terminates, returns the length. */
static long read_file(const char *name, const char *path, char *buf, size_t cap) {
    buf[0] = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        fail(name, "open for reading", fd, errno);
        return -1;
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n < 0) {
            fail(name, "read", (long)n, errno);
            close(fd);
            return -1;
        }
        if (n == 0 || got + (size_t)n >= cap - 1) {
            got += (size_t)n;
            break;
        }
        got += (size_t)n;
    }
    buf[got] = 0;
    close(fd);
    return (long)got;
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Removes a leftover work tree from an earlier, failed run (never follows links). */
static void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        char child[2048];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            remove_tree(child);
            rewinddir(d);
        }
        closedir(d);
    }
    rmdir(path);
}

/* ---- checks, one concern per function ---------------------------------------- */

static void check_create_excl(void) {
    MUST("mkdir_work", mkdir(g_work, 0755));
    MUST_FAIL("mkdir_exists_EEXIST", mkdir(g_work, 0755), EEXIST);
    int fd = MUST("open_creat_excl", open(P("a.txt"), O_WRONLY | O_CREAT | O_EXCL, 0644));
    MUST_FAIL("open_excl_exists_EEXIST", open(P("a.txt"), O_WRONLY | O_CREAT | O_EXCL, 0644),
              EEXIST);
    CHECK_EQ("write_len", write(fd, "hello world\n", 12), 12);
    MUST("close", close(fd));
    MUST_FAIL("close_twice_EBADF", close(fd), EBADF);
    MUST_FAIL("open_missing_ENOENT", open(P("missing"), O_RDONLY), ENOENT);
    MUST_FAIL("open_creat_missing_parent_ENOENT",
              open(P("nodir/x"), O_WRONLY | O_CREAT, 0644), ENOENT);
}

static void check_read_write_seek(void) {
    char buf[64];
    int fd = MUST("open_rdwr", open(P("a.txt"), O_RDWR));
    CHECK_EQ("lseek_cur_start", lseek(fd, 0, SEEK_CUR), 0);
    CHECK_EQ("lseek_set", lseek(fd, 6, SEEK_SET), 6);
    CHECK_EQ("write_mid", write(fd, "WORLD", 5), 5);
    CHECK_EQ("lseek_cur_after_write", lseek(fd, 0, SEEK_CUR), 11);
    CHECK_EQ("lseek_end", lseek(fd, 0, SEEK_END), 12);
    CHECK_EQ("lseek_end_neg", lseek(fd, -12, SEEK_END), 0);
    MUST_FAIL("lseek_negative_EINVAL", lseek(fd, -1, SEEK_SET), EINVAL);
    MUST_FAIL("lseek_bad_whence_EINVAL", lseek(fd, 0, 99), EINVAL);
    CHECK_EQ("pwrite_len", pwrite(fd, "H", 1, 0), 1);
    CHECK_EQ("pwrite_keeps_offset", lseek(fd, 0, SEEK_CUR), 0);
    memset(buf, 0, sizeof buf);
    CHECK_EQ("read_all", read(fd, buf, sizeof buf), 12);
    CHECK("read_content", memcmp(buf, "Hello WORLD\n", 12) == 0);
    CHECK_EQ("read_eof", read(fd, buf, sizeof buf), 0);
    memset(buf, 0, sizeof buf);
    CHECK_EQ("pread_len", pread(fd, buf, 5, 6), 5);
    CHECK("pread_content", memcmp(buf, "WORLD", 5) == 0);
    CHECK_EQ("pread_keeps_offset", lseek(fd, 0, SEEK_CUR), 12);
    CHECK_EQ("pread_past_eof", pread(fd, buf, 5, 100), 0);
    MUST_FAIL("pread_negative_EINVAL", pread(fd, buf, 1, -1), EINVAL);
    MUST("close_rdwr", close(fd));

    fd = MUST("open_rdonly", open(P("a.txt"), O_RDONLY));
    MUST_FAIL("write_on_rdonly_EBADF", write(fd, "x", 1), EBADF);
    MUST_FAIL("pwrite_on_rdonly_EBADF", pwrite(fd, "x", 1, 0), EBADF);
    MUST("close_rdonly", close(fd));
    fd = MUST("open_wronly", open(P("a.txt"), O_WRONLY));
    MUST_FAIL("read_on_wronly_EBADF", read(fd, buf, 1), EBADF);
    MUST("close_wronly", close(fd));
}

static void check_vectored(void) {
    char a[4], b[5], c[3];
    struct iovec wv[3] = {{"abc", 3}, {"", 0}, {"defgh", 5}};
    int fd = MUST("open_vec", open(P("vec"), O_RDWR | O_CREAT | O_TRUNC, 0644));
    CHECK_EQ("writev_len", writev(fd, wv, 3), 8);
    CHECK_EQ("writev_seek_back", lseek(fd, 0, SEEK_SET), 0);
    struct iovec rv[3] = {{a, 4}, {b, 5}, {c, 3}};
    memset(b, 0, sizeof b);
    CHECK_EQ("readv_len", readv(fd, rv, 3), 8);
    CHECK("readv_content", memcmp(a, "abcd", 4) == 0 && memcmp(b, "efgh", 4) == 0);
    MUST("close_vec", close(fd));
    MUST("unlink_vec", unlink(P("vec")));
}

static void check_append_trunc(void) {
    char buf[64];
    int fd = MUST("open_append", open(P("a.txt"), O_WRONLY | O_APPEND));
    CHECK("fcntl_getfl_append", (fcntl(fd, F_GETFL) & O_APPEND) != 0);
    CHECK_EQ("append_lseek_start", lseek(fd, 0, SEEK_SET), 0);
    CHECK_EQ("append_write", write(fd, "tail", 4), 4);
    CHECK_EQ("append_offset_at_end", lseek(fd, 0, SEEK_CUR), 16);
    MUST("close_append", close(fd));
    CHECK("append_content", read_file("append_read", P("a.txt"), buf, sizeof buf) == 16 &&
                                memcmp(buf, "Hello WORLD\ntail", 16) == 0);

    fd = MUST("open_setfl", open(P("a.txt"), O_WRONLY));
    CHECK("fcntl_getfl_no_append", (fcntl(fd, F_GETFL) & O_APPEND) == 0);
    MUST("fcntl_setfl_append", fcntl(fd, F_SETFL, O_APPEND));
    CHECK("fcntl_setfl_append_visible", (fcntl(fd, F_GETFL) & O_APPEND) != 0);
    CHECK_EQ("setfl_append_write", write(fd, "!", 1), 1);
    MUST("close_setfl", close(fd));
    CHECK("setfl_append_content", read_file("setfl_read", P("a.txt"), buf, sizeof buf) == 17 &&
                                      buf[16] == '!');

    struct stat st;
    fd = MUST("open_trunc", open(P("a.txt"), O_WRONLY | O_TRUNC));
    MUST("fstat_after_trunc", fstat(fd, &st));
    CHECK_EQ("trunc_size_zero", st.st_size, 0);
    CHECK_EQ("trunc_write", write(fd, "0123456789", 10), 10);
    MUST("close_trunc", close(fd));
}

static void check_truncate_allocate(void) {
    struct stat st;
    char buf[128];
    int fd = MUST("open_ftruncate", open(P("a.txt"), O_RDWR));
    MUST("ftruncate_grow", ftruncate(fd, 100));
    MUST("fstat_grow", fstat(fd, &st));
    CHECK_EQ("ftruncate_grow_size", st.st_size, 100);
    CHECK_EQ("grown_read", pread(fd, buf, sizeof buf, 0), 100);
    int zeros = 1;
    for (int i = 10; i < 100; i++) zeros &= buf[i] == 0;
    CHECK("grown_zero_filled", zeros && memcmp(buf, "0123456789", 10) == 0);
    MUST("ftruncate_shrink", ftruncate(fd, 3));
    MUST("fstat_shrink", fstat(fd, &st));
    CHECK_EQ("ftruncate_shrink_size", st.st_size, 3);
    MUST_FAIL("ftruncate_negative_EINVAL", ftruncate(fd, -1), EINVAL);
    CHECK_EQ("pwrite_hole", pwrite(fd, "Z", 1, 10), 1);
    CHECK_EQ("hole_read", pread(fd, buf, sizeof buf, 0), 11);
    CHECK("hole_zero_filled", buf[3] == 0 && buf[9] == 0 && buf[10] == 'Z' && buf[2] == '2');
    CHECK_EQ("lseek_past_end", lseek(fd, 20, SEEK_SET), 20);
    CHECK_EQ("write_past_end", write(fd, "Q", 1), 1);
    MUST("fstat_past_end", fstat(fd, &st));
    CHECK_EQ("write_past_end_size", st.st_size, 21);
    MUST("fsync", fsync(fd));
    MUST("fdatasync", fdatasync(fd));
    MUST_RC("posix_fadvise_sequential", posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL), 0);
    MUST_RC("posix_fadvise_dontneed", posix_fadvise(fd, 0, 10, POSIX_FADV_DONTNEED), 0);
    MUST_RC("posix_fadvise_negative_len_EINVAL", posix_fadvise(fd, 0, -1, POSIX_FADV_NORMAL),
            EINVAL);
    MUST_RC("posix_fallocate", posix_fallocate(fd, 0, 4096), 0);
    MUST("fstat_fallocate", fstat(fd, &st));
    CHECK_EQ("posix_fallocate_size", st.st_size, 4096);
    MUST_RC("posix_fallocate_inside", posix_fallocate(fd, 0, 10), 0);
    MUST("fstat_fallocate_inside", fstat(fd, &st));
    CHECK_EQ("posix_fallocate_never_shrinks", st.st_size, 4096);
    CHECK("fallocate_keeps_data", pread(fd, buf, 3, 0) == 3 && memcmp(buf, "012", 3) == 0);
    MUST("close_ftruncate", close(fd));

    MUST("truncate_path", truncate(P("a.txt"), 5));
    MUST("stat_truncate_path", stat(P("a.txt"), &st));
    CHECK_EQ("truncate_path_size", st.st_size, 5);
    MUST_FAIL("truncate_missing_ENOENT", truncate(P("missing"), 0), ENOENT);
}

static void check_stat_times(void) {
    struct stat st, st2;
    MUST("stat_file", stat(P("a.txt"), &st));
    CHECK("stat_is_reg", S_ISREG(st.st_mode) && st.st_nlink == 1 && st.st_size == 5);
    MUST("stat_dir", stat(g_work, &st2));
    CHECK("stat_is_dir", S_ISDIR(st2.st_mode));
    CHECK("stat_distinct_ino", st.st_ino != st2.st_ino);
    MUST("stat_dot_path", stat(P("./a.txt"), &st2));
    CHECK("stat_dot_same_ino", st.st_ino == st2.st_ino);
    MUST("mkdir_sub_for_dotdot", mkdir(P("sub"), 0755));
    MUST("stat_dotdot_inside", stat(P("sub/../a.txt"), &st2));
    CHECK("stat_dotdot_same_ino", st.st_ino == st2.st_ino);
    MUST("rmdir_sub_for_dotdot", rmdir(P("sub")));
    MUST("access_f_ok", access(P("a.txt"), F_OK));
    MUST_FAIL("access_missing_ENOENT", access(P("missing"), F_OK), ENOENT);
    MUST_FAIL("stat_missing_ENOENT", stat(P("missing"), &st), ENOENT);
    MUST_FAIL("stat_file_as_dir_ENOTDIR", stat(P("a.txt/x"), &st), ENOTDIR);

    struct timespec ts[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
    MUST("utimensat", utimensat(AT_FDCWD, P("a.txt"), ts, 0));
    MUST("stat_after_utimensat", stat(P("a.txt"), &st));
    CHECK_EQ("utimensat_atime", ns(st.st_atim), 1000000000123456789LL);
    CHECK_EQ("utimensat_mtime", ns(st.st_mtim), 1200000000987654321LL);

    int fd = MUST("open_futimens", open(P("a.txt"), O_RDWR));
    struct timespec ts2[2] = {{0, UTIME_OMIT}, {1300000000, 5}};
    MUST("futimens_omit_atime", futimens(fd, ts2));
    MUST("fstat_after_futimens", fstat(fd, &st));
    CHECK_EQ("futimens_atime_kept", ns(st.st_atim), 1000000000123456789LL);
    CHECK_EQ("futimens_mtime_set", ns(st.st_mtim), 1300000000000000005LL);
    struct timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    MUST("futimens_now", futimens(fd, now));
    MUST("fstat_after_futimens_now", fstat(fd, &st));
    CHECK_EQ("futimens_now_mtime_kept", ns(st.st_mtim), 1300000000000000005LL);
    MUST("close_futimens", close(fd));
    MUST_FAIL("utimensat_missing_ENOENT", utimensat(AT_FDCWD, P("missing"), ts, 0), ENOENT);
}

static void check_open_flags(void) {
    int fd;
    MUST("mkdir_d", mkdir(P("d"), 0755));
    MUST_FAIL("open_file_o_directory_ENOTDIR", open(P("a.txt"), O_RDONLY | O_DIRECTORY),
              ENOTDIR);
    fd = MUST("open_dir_o_directory", open(P("d"), O_RDONLY | O_DIRECTORY));
    struct stat st;
    MUST("fstat_dir_fd", fstat(fd, &st));
    CHECK("fstat_dir_fd_is_dir", S_ISDIR(st.st_mode));
    MUST("close_dir_fd", close(fd));
    MUST_FAIL("open_dir_wronly_EISDIR", open(P("d"), O_WRONLY), EISDIR);
    MUST_FAIL("open_dir_creat_EISDIR", open(P("d"), O_WRONLY | O_CREAT, 0644), EISDIR);
    MUST_FAIL("open_trailing_slash_file_ENOTDIR", open(P("a.txt/"), O_RDONLY), ENOTDIR);
    MUST_FAIL("open_through_file_ENOTDIR", open(P("a.txt/x"), O_RDONLY), ENOTDIR);

    fd = MUST("open_nonblock", open(P("a.txt"), O_RDONLY | O_NONBLOCK));
    CHECK("fcntl_getfl_nonblock", (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    char buf[8];
    CHECK_EQ("nonblock_file_read", read(fd, buf, sizeof buf), 5);
    MUST("fcntl_clear_nonblock", fcntl(fd, F_SETFL, 0));
    CHECK("fcntl_nonblock_cleared", (fcntl(fd, F_GETFL) & O_NONBLOCK) == 0);
    MUST("close_nonblock", close(fd));
}

static void check_dirs(void) {
    MUST("mkdir_d_sub", mkdir(P("d/sub"), 0755));
    MUST_FAIL("mkdir_missing_parent_ENOENT", mkdir(P("nodir/x"), 0755), ENOENT);
    MUST_FAIL("mkdir_through_file_ENOTDIR", mkdir(P("a.txt/x"), 0755), ENOTDIR);
    MUST_FAIL("mkdir_over_file_EEXIST", mkdir(P("a.txt"), 0755), EEXIST);
    MUST_FAIL("rmdir_nonempty_ENOTEMPTY", rmdir(P("d")), ENOTEMPTY);
    MUST_FAIL("rmdir_file_ENOTDIR", rmdir(P("a.txt")), ENOTDIR);
    MUST_FAIL("rmdir_missing_ENOENT", rmdir(P("missing")), ENOENT);
    MUST_FAIL("unlink_dir_EISDIR", unlink(P("d")), EISDIR);
    MUST_FAIL("unlink_missing_ENOENT", unlink(P("missing")), ENOENT);
    MUST("rmdir_d_sub", rmdir(P("d/sub")));
    CHECK("rmdir_d_sub_gone", !exists(P("d/sub")));
    MUST_FAIL("opendir_file_ENOTDIR", (long)(opendir(P("a.txt")) ? 0 : -1), ENOTDIR);
    MUST_FAIL("opendir_missing_ENOENT", (long)(opendir(P("missing")) ? 0 : -1), ENOENT);

    char cwd[1024], here[1024];
    CHECK("getcwd", getcwd(cwd, sizeof cwd) != NULL);
    MUST("chdir_work", chdir(g_work));
    char buf[16];
    CHECK_EQ("relative_open_after_chdir", read_file("chdir_read", "a.txt", buf, sizeof buf), 5);
    CHECK("getcwd_after_chdir", getcwd(here, sizeof here) != NULL && strlen(here) >= 12 &&
                                    strcmp(here + strlen(here) - 12, "fileops.work") == 0);
    /* wasi-libc starts in "/", which only a preopen of "/" (or ".") can enter again;
     * when it cannot, the absolute base dir is an equally good place to be. */
    MUST("chdir_back", chdir(cwd) == 0 || (base_is_absolute() && chdir(g_base) == 0) ? 0 : -1);
    MUST_FAIL("chdir_file_ENOTDIR", chdir(P("a.txt")), ENOTDIR);
}

static void check_rename(void) {
    char buf[64];
    struct stat st;
    write_file("rename_setup", P("r1"), "one");
    write_file("rename_setup", P("r2"), "two");
    MUST("rename_file_over_file", rename(P("r1"), P("r2")));
    CHECK("rename_src_gone", !exists(P("r1")));
    CHECK("rename_dst_content", read_file("rename_read", P("r2"), buf, sizeof buf) == 3 &&
                                    strcmp(buf, "one") == 0);
    MUST("rename_same_name", rename(P("r2"), P("r2")));
    CHECK("rename_same_name_kept", exists(P("r2")));

    MUST("mkdir_dA", mkdir(P("dA"), 0755));
    write_file("rename_setup", P("dA/inner"), "in");
    MUST("mkdir_dB_empty", mkdir(P("dB"), 0755));
    MUST("rename_dir_over_empty_dir", rename(P("dA"), P("dB")));
    CHECK("rename_dir_moved", !exists(P("dA")) && exists(P("dB/inner")));
    MUST("mkdir_dC", mkdir(P("dC"), 0755));
    MUST_FAIL("rename_dir_over_nonempty_ENOTEMPTY", rename(P("dC"), P("dB")), ENOTEMPTY);
    MUST("mkdir_dB_sub", mkdir(P("dB/sub"), 0755));
    MUST_FAIL("rename_dir_into_own_subdir_EINVAL", rename(P("dB"), P("dB/sub/x")), EINVAL);
    MUST_FAIL("rename_file_over_dir_EISDIR", rename(P("r2"), P("dC")), EISDIR);
    MUST_FAIL("rename_dir_over_file_ENOTDIR", rename(P("dC"), P("r2")), ENOTDIR);
    MUST_FAIL("rename_missing_ENOENT", rename(P("missing"), P("x")), ENOENT);
    MUST_FAIL("rename_to_missing_parent_ENOENT", rename(P("r2"), P("nodir/x")), ENOENT);
    MUST("rename_file_into_dir", rename(P("r2"), P("dB/sub/r2")));
    MUST("stat_renamed_into_dir", stat(P("dB/sub/r2"), &st));
    CHECK_EQ("renamed_into_dir_size", st.st_size, 3);
    MUST("rename_dir_to_new_name", rename(P("dC"), P("dD")));
    CHECK("renamed_dir_exists", exists(P("dD")) && !exists(P("dC")));

    /* Clean up so later checks start from a known tree. */
    MUST("unlink_moved_r2", unlink(P("dB/sub/r2")));
    MUST("rmdir_dB_sub", rmdir(P("dB/sub")));
    MUST("unlink_dB_inner", unlink(P("dB/inner")));
    MUST("rmdir_dB", rmdir(P("dB")));
    MUST("rmdir_dD", rmdir(P("dD")));
}

static void check_symlinks(void) {
    char buf[64];
    struct stat st;
    MUST("symlink_file", symlink("a.txt", P("sl")));
    MUST_FAIL("symlink_exists_EEXIST", symlink("a.txt", P("sl")), EEXIST);
    ssize_t n = readlink(P("sl"), buf, sizeof buf);
    CHECK_EQ("readlink_len", n, 5);
    CHECK("readlink_content", memcmp(buf, "a.txt", 5) == 0);
    CHECK("readlink_truncates", readlink(P("sl"), buf, 2) == 2 && memcmp(buf, "a.", 2) == 0);
    MUST_FAIL("readlink_regular_EINVAL", readlink(P("a.txt"), buf, sizeof buf), EINVAL);
    MUST_FAIL("readlink_missing_ENOENT", readlink(P("missing"), buf, sizeof buf), ENOENT);
    MUST("lstat_symlink", lstat(P("sl"), &st));
    CHECK("lstat_is_link", S_ISLNK(st.st_mode));
    MUST("stat_follows_symlink", stat(P("sl"), &st));
    CHECK("stat_follows_is_reg", S_ISREG(st.st_mode) && st.st_size == 5);
    CHECK_EQ("open_through_symlink", read_file("symlink_read", P("sl"), buf, sizeof buf), 5);
    MUST_FAIL("open_nofollow_ELOOP", open(P("sl"), O_RDONLY | O_NOFOLLOW), ELOOP);
    MUST_FAIL("open_excl_on_symlink_EEXIST", open(P("sl"), O_WRONLY | O_CREAT | O_EXCL, 0644),
              EEXIST);

    MUST("symlink_loop_a", symlink("loopB", P("loopA")));
    MUST("symlink_loop_b", symlink("loopA", P("loopB")));
    MUST_FAIL("open_loop_ELOOP", open(P("loopA"), O_RDONLY), ELOOP);
    MUST_FAIL("stat_loop_ELOOP", stat(P("loopA"), &st), ELOOP);
    MUST("symlink_self", symlink("self", P("self")));
    MUST_FAIL("open_self_loop_ELOOP", open(P("self"), O_RDONLY), ELOOP);

    MUST("symlink_dangling", symlink("nothing-here", P("dangling")));
    MUST_FAIL("stat_dangling_ENOENT", stat(P("dangling"), &st), ENOENT);
    MUST("lstat_dangling", lstat(P("dangling"), &st));
    MUST_FAIL("open_excl_dangling_EEXIST",
              open(P("dangling"), O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);

    MUST("mkdir_target_dir", mkdir(P("tdir"), 0755));
    write_file("symlink_setup", P("tdir/inner"), "inner");
    MUST("symlink_dir", symlink("tdir", P("sld")));
    MUST("stat_symlink_dir", stat(P("sld"), &st));
    CHECK("stat_symlink_dir_is_dir", S_ISDIR(st.st_mode));
    CHECK_EQ("open_via_dir_symlink", read_file("dirlink_read", P("sld/inner"), buf, sizeof buf), 5);
    MUST("symlink_relative_up", symlink("../a.txt", P("tdir/up")));
    CHECK_EQ("open_relative_up_symlink", read_file("up_read", P("tdir/up"), buf, sizeof buf), 5);
    MUST_FAIL("rmdir_symlink_ENOTDIR", rmdir(P("sld")), ENOTDIR);

    MUST("unlink_symlink", unlink(P("sl")));
    CHECK("unlink_symlink_keeps_target", !exists(P("sl")) && exists(P("a.txt")));
    MUST("unlink_loopA", unlink(P("loopA")));
    MUST("unlink_loopB", unlink(P("loopB")));
    MUST("unlink_self", unlink(P("self")));
    MUST("unlink_dangling", unlink(P("dangling")));
    MUST("unlink_sld", unlink(P("sld")));
    MUST("unlink_tdir_up", unlink(P("tdir/up")));
    MUST("unlink_tdir_inner", unlink(P("tdir/inner")));
    MUST("rmdir_tdir", rmdir(P("tdir")));
}

static void check_hard_links(void) {
    struct stat st, st2;
    char buf[16];
    MUST("link", link(P("a.txt"), P("hard")));
    MUST("stat_link_src", stat(P("a.txt"), &st));
    MUST("stat_link_dst", stat(P("hard"), &st2));
    CHECK("link_nlink_2", st.st_nlink == 2 && st2.st_nlink == 2);
    CHECK("link_same_ino", st.st_ino == st2.st_ino);
    int fd = MUST("open_link_dst", open(P("hard"), O_WRONLY));
    CHECK_EQ("write_via_link", pwrite(fd, "L", 1, 0), 1);
    MUST("close_link_dst", close(fd));
    CHECK("link_shares_data", read_file("link_read", P("a.txt"), buf, sizeof buf) == 5 &&
                                  buf[0] == 'L');
    MUST_FAIL("link_exists_EEXIST", link(P("a.txt"), P("hard")), EEXIST);
    MUST_FAIL("link_missing_ENOENT", link(P("missing"), P("hard2")), ENOENT);
    MUST("unlink_link", unlink(P("hard")));
    MUST("stat_after_unlink_link", stat(P("a.txt"), &st));
    CHECK_EQ("link_nlink_back_to_1", st.st_nlink, 1);
}

/* Longest directory entry name this program creates or expects, plus NUL. */
#define NAME_CAP 32

/* Copies a directory entry name; fails the check instead of truncating. */
static void copy_name(const char *check, char *dst, const char *src) {
    size_t len = strlen(src);
    if (len >= NAME_CAP) {
        fail(check, "entry name shorter than NAME_CAP", (long)len, 0);
        len = NAME_CAP - 1;
    }
    memcpy(dst, src, len);
    dst[len] = 0;
}

/* Reads the next entry other than "." and ".." into dst ("" at the end). */
static void next_name(DIR *d, const char *check, char *dst) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL && (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))) {}
    dst[0] = 0;
    if (e == NULL) {
        fail(check, "another entry", 0, errno);
        return;
    }
    copy_name(check, dst, e->d_name);
    pass(check);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Reads all names of a directory (without "." and ".."), in the order returned. */
static int list_dir(const char *name, const char *path, char names[][NAME_CAP], int cap) {
    DIR *d = opendir(path);
    if (!d) {
        fail(name, "opendir", -1, errno);
        return -1;
    }
    int n = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            fail(name, "at most cap entries", n, 0);
            break;
        }
        copy_name(name, names[n++], e->d_name);
    }
    if (errno != 0) fail(name, "readdir end without error", -1, errno);
    closedir(d);
    return n;
}

#ifdef __wasi__
static int is_sorted(char names[][NAME_CAP], int n) {
    for (int i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) >= 0) return 0;
    return 1;
}
#endif

/* The names, sorted, equal `want` (which is sorted); order as returned is ignored. */
static int same_names_sorted(char names[][NAME_CAP], int n, const char *const *want) {
    const char *got[16];
    if (n > 16) return 0;
    for (int i = 0; i < n; i++) got[i] = names[i];
    qsort(got, (size_t)n, sizeof *got, cmp_str);
    for (int i = 0; i < n; i++)
        if (strcmp(got[i], want[i]) != 0) return 0;
    return 1;
}

static int distinct_names(char names[][NAME_CAP], int n) {
    static const char *all[400];
    if (n > 400) return 0;
    for (int i = 0; i < n; i++) all[i] = names[i];
    qsort(all, (size_t)n, sizeof *all, cmp_str);
    for (int i = 1; i < n; i++)
        if (strcmp(all[i - 1], all[i]) >= 0) return 0;
    return 1;
}

static void check_readdir(void) {
    static char names[400][NAME_CAP];
    static const char *want[] = {"A", "a", "b", "c", "d10", "d2", "link", "sub"};
    MUST("mkdir_ls", mkdir(P("ls"), 0755));
    static const char *files[] = {"c", "a", "d2", "b", "A", "d10"};
    for (unsigned i = 0; i < sizeof files / sizeof *files; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "ls/%s", files[i]);
        write_file("readdir_setup", P(rel), files[i]);
    }
    MUST("mkdir_ls_sub", mkdir(P("ls/sub"), 0755));
    MUST("symlink_ls_link", symlink("a", P("ls/link")));

    int n = list_dir("readdir_small", P("ls"), names, 400);
    CHECK_EQ("readdir_count", n, 8);
    CHECK("readdir_same_names", same_names_sorted(names, n, want));
#ifdef __wasi__
    /* The runtime promises name order; a native filesystem does not. */
    CHECK("readdir_sorted", is_sorted(names, n));
#endif

    /* d_type for each kind of entry. */
    DIR *d = opendir(P("ls"));
    CHECK("opendir_ls", d != NULL);
    if (d == NULL) return;
    int types_ok = 1, seen = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int want_type = !strcmp(e->d_name, "sub")    ? DT_DIR
                        : !strcmp(e->d_name, "link") ? DT_LNK
                        : !strcmp(e->d_name, "a")    ? DT_REG
                                                     : -1;
        if (want_type < 0) continue;
        types_ok &= e->d_type == want_type;
        seen++;
    }
    CHECK("readdir_d_type", types_ok && seen == 3);

    /* telldir/seekdir resume at the same entry; rewinddir restarts. */
    rewinddir(d);
    char first[NAME_CAP], after[NAME_CAP], again[NAME_CAP];
    next_name(d, "readdir_after_rewind", first);
    long pos = telldir(d);
    next_name(d, "readdir_after_telldir", after);
    next_name(d, "readdir_skip_one", again);
    seekdir(d, pos);
    next_name(d, "readdir_after_seekdir", again);
    CHECK("seekdir_resumes_same_entry", strcmp(after, again) == 0 && strcmp(first, after) != 0);
    closedir(d);

    /* Enough entries to need several fd_readdir calls: cookies must resume exactly. */
    MUST("mkdir_many", mkdir(P("many"), 0755));
    for (int i = 299; i >= 0; i--) {
        char rel[32];
        snprintf(rel, sizeof rel, "many/f%03d", i);
        int fd = open(P(rel), O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) fail("readdir_many_setup", "create", fd, errno);
        close(fd);
    }
    pass("readdir_many_setup");
    n = list_dir("readdir_many", P("many"), names, 400);
    CHECK_EQ("readdir_many_count", n, 300);
    CHECK("readdir_many_distinct", distinct_names(names, n));
#ifdef __wasi__
    CHECK("readdir_many_sorted", is_sorted(names, n));
#endif
    for (int i = 0; i < 300; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "many/f%03d", i);
        if (unlink(P(rel)) != 0) fail("readdir_many_cleanup", "unlink", -1, errno);
    }
    pass("readdir_many_cleanup");
    CHECK_EQ("readdir_empty_after_cleanup", list_dir("readdir_empty", P("many"), names, 400), 0);
    MUST("rmdir_many", rmdir(P("many")));

    for (unsigned i = 0; i < sizeof files / sizeof *files; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "ls/%s", files[i]);
        if (unlink(P(rel)) != 0) fail("readdir_cleanup", "unlink", -1, errno);
    }
    MUST("unlink_ls_link", unlink(P("ls/link")));
    MUST("rmdir_ls_sub", rmdir(P("ls/sub")));
    MUST("rmdir_ls", rmdir(P("ls")));
}

static void check_unlink_while_open(void) {
    struct stat st;
    char buf[16];
    int fd = MUST("open_tmp", open(P("tmp"), O_RDWR | O_CREAT | O_TRUNC, 0644));
    CHECK_EQ("write_tmp", write(fd, "data", 4), 4);
    MUST("unlink_open_file", unlink(P("tmp")));
    MUST_FAIL("stat_unlinked_ENOENT", stat(P("tmp"), &st), ENOENT);
    MUST("fstat_unlinked", fstat(fd, &st));
    CHECK("fstat_unlinked_nlink_0", st.st_nlink == 0 && st.st_size == 4);
    CHECK("pread_unlinked", pread(fd, buf, sizeof buf, 0) == 4 && memcmp(buf, "data", 4) == 0);
    CHECK_EQ("pwrite_unlinked", pwrite(fd, "more", 4, 4), 4);
    write_file("recreate_tmp", P("tmp"), "new");
    CHECK("recreated_is_independent", pread(fd, buf, sizeof buf, 0) == 8 &&
                                          memcmp(buf, "datamore", 8) == 0);
    MUST("close_unlinked", close(fd));
    CHECK_EQ("recreated_content", read_file("recreate_read", P("tmp"), buf, sizeof buf), 3);
    MUST("unlink_recreated", unlink(P("tmp")));
}

static void check_renumber(void) {
    char buf[16];
    write_file("renumber_setup", P("one"), "one");
    write_file("renumber_setup", P("two"), "two");
    int fd1 = MUST("open_renumber_src", open(P("one"), O_RDONLY));
    int fd2 = MUST("open_renumber_dst", open(P("two"), O_RDONLY));
#ifdef __wasi__
    __wasi_errno_t err = __wasi_fd_renumber((__wasi_fd_t)fd1, (__wasi_fd_t)fd2);
    CHECK_EQ("fd_renumber", err, 0);
    CHECK("fd_renumber_bad_src_EBADF",
          __wasi_fd_renumber(4000, (__wasi_fd_t)fd2) == __WASI_ERRNO_BADF);
#else
    MUST("dup2", dup2(fd1, fd2));
    MUST("close_dup2_src", close(fd1));
#endif
    CHECK("renumber_dst_reads_src", read(fd2, buf, sizeof buf) == 3 && memcmp(buf, "one", 3) == 0);
    MUST_FAIL("renumber_src_closed_EBADF", read(fd1, buf, 1), EBADF);
    MUST("close_renumbered", close(fd2));
    MUST("unlink_one", unlink(P("one")));
    MUST("unlink_two", unlink(P("two")));
}

static void check_names_and_bad_fds(void) {
    static char longname[300], longpath[5000];
    struct stat st;
    char buf[4];
    memset(longname, 'n', sizeof longname - 1);
    MUST_FAIL("open_name_too_long_ENAMETOOLONG",
              open(P(longname), O_WRONLY | O_CREAT, 0644), ENAMETOOLONG);
    MUST_FAIL("mkdir_name_too_long_ENAMETOOLONG", mkdir(P(longname), 0755), ENAMETOOLONG);
    size_t off = (size_t)snprintf(longpath, sizeof longpath, "%s/", g_work);
    while (off + 3 < sizeof longpath) {
        memcpy(longpath + off, "x/", 2);
        off += 2;
    }
    longpath[off] = 0;
    MUST_FAIL("stat_path_too_long_ENAMETOOLONG", stat(longpath, &st), ENAMETOOLONG);

    MUST_FAIL("read_bad_fd_EBADF", read(1000, buf, 1), EBADF);
    MUST_FAIL("write_bad_fd_EBADF", write(1000, "x", 1), EBADF);
    MUST_FAIL("fstat_bad_fd_EBADF", fstat(1000, &st), EBADF);
    MUST_FAIL("lseek_bad_fd_EBADF", lseek(1000, 0, SEEK_SET), EBADF);
    MUST_FAIL("close_bad_fd_EBADF", close(1000), EBADF);
    MUST_FAIL("fsync_bad_fd_EBADF", fsync(1000), EBADF);
    MUST_FAIL("ftruncate_bad_fd_EBADF", ftruncate(1000, 0), EBADF);
}

static void check_cleanup(void) {
    MUST("unlink_a", unlink(P("a.txt")));
    MUST("rmdir_d", rmdir(P("d")));
    static char names[4][NAME_CAP];
    CHECK_EQ("work_dir_empty", list_dir("final_listing", g_work, names, 4), 0);
    MUST("rmdir_work", rmdir(g_work));
    struct stat st;
    MUST_FAIL("work_dir_gone_ENOENT", stat(g_work, &st), ENOENT);
}

int main(int argc, char **argv) {
    int argi = 1;
    if (argi < argc && strcmp(argv[argi], "-k") == 0) {
        g_keep_going = 1;
        argi++;
    }
    const char *base = argi < argc ? argv[argi] : "/data";
    g_base = base;
    if (snprintf(g_work, sizeof g_work, "%s/fileops.work", base) >= (int)sizeof g_work) {
        fprintf(stderr, "fileops: base dir path too long: %s\n", base);
        return 2;
    }
    if (exists(g_work)) {
        printf("fileops: removing leftover %s\n", g_work);
        remove_tree(g_work);
    }
    check_create_excl();
    check_read_write_seek();
    check_vectored();
    check_append_trunc();
    check_truncate_allocate();
    check_stat_times();
    check_open_flags();
    check_dirs();
    check_rename();
    check_symlinks();
    check_hard_links();
    check_readdir();
    check_unlink_while_open();
    check_renumber();
    check_names_and_bad_fds();
    check_cleanup();
    if (g_failures > 0) {
        printf("fileops: %d checks passed, %d failed\n", g_checks, g_failures);
        return 1;
    }
    printf("fileops: %d checks passed\n", g_checks);
    return 0;
}
