/*
 * kv_server: a key-value store server for replicated execution. It reads commands
 * from stdin (one per line, each one input transaction under the runtime), answers
 * on stdout, and keeps its data in an append-only log in the filesystem, from which
 * the in-memory index is rebuilt at startup. It survives a validator restart either
 * way: from the process snapshot (index in memory) or from the log.
 *
 * Usage: kv_server [LOG_PATH]   (else env KV_LOG, else /data/kv.log)
 * Commands and answers (one answer line per command, except SCAN):
 *   SET <key> <value>   -> OK                 value = rest of the line, spaces kept
 *   GET <key>           -> VALUE <value> | NOT_FOUND
 *   DEL <key>           -> OK | NOT_FOUND
 *   SCAN [<prefix>]     -> KEY <key> <value> ... per match in key order, then END
 *   anything malformed  -> ERR <reason>
 * Keys are 1..256 bytes without spaces; values 1..4096 bytes; no NUL bytes.
 * Log records: "S <key> <value>\n" and "D <key>\n", written with write(2) before the
 * answer, so an acknowledged change is in the filesystem. A torn last record (no
 * newline, from a crash mid-append) is cut off at startup; a malformed record
 * elsewhere means corruption and the server refuses to start.
 * Exit: 0 at EOF on stdin; 1 if the log cannot be opened or is corrupt.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errname.h"

#define MAX_KEY 256
#define MAX_VALUE 4096

/* ---- index: an AVL tree ordered by strcmp (unsigned bytes) ----
 * O(log n) per operation with a height bound of 1.44 log2(n), so the recursion below
 * stays shallow (about 40 frames for 10^8 keys) and costs the same fuel on every
 * validator. */

struct node {
    char *key;
    char *value;
    struct node *left, *right;
    int height;
};

static struct node *g_root;
static size_t g_keys;

static int height(const struct node *n) { return n ? n->height : 0; }

static void update(struct node *n) {
    int l = height(n->left), r = height(n->right);
    n->height = (l > r ? l : r) + 1;
}

static struct node *rotate_right(struct node *n) {
    struct node *l = n->left;
    n->left = l->right;
    l->right = n;
    update(n);
    update(l);
    return l;
}

static struct node *rotate_left(struct node *n) {
    struct node *r = n->right;
    n->right = r->left;
    r->left = n;
    update(n);
    update(r);
    return r;
}

/* Restores the AVL balance of n after one of its subtrees changed height by one. */
static struct node *rebalance(struct node *n) {
    update(n);
    int balance = height(n->left) - height(n->right);
    if (balance > 1) {
        if (height(n->left->left) < height(n->left->right)) n->left = rotate_left(n->left);
        return rotate_right(n);
    }
    if (balance < -1) {
        if (height(n->right->right) < height(n->right->left)) n->right = rotate_right(n->right);
        return rotate_left(n);
    }
    return n;
}

static const char *index_get(const char *key) {
    for (const struct node *n = g_root; n;) {
        int c = strcmp(key, n->key);
        if (c == 0) return n->value;
        n = c < 0 ? n->left : n->right;
    }
    return NULL;
}

/* Inserts or replaces; *fresh is the preallocated node used when the key is new
 * (set to NULL once consumed), so nothing can fail half-way through the tree. */
static struct node *insert(struct node *n, struct node **fresh) {
    if (n == NULL) {
        struct node *f = *fresh;
        *fresh = NULL;
        g_keys++;
        return f;
    }
    int c = strcmp((*fresh)->key, n->key);
    if (c == 0) {
        free(n->value);
        n->value = (*fresh)->value;
        (*fresh)->value = NULL;
        return n;
    }
    if (c < 0) n->left = insert(n->left, fresh);
    else n->right = insert(n->right, fresh);
    return rebalance(n);
}

/* Returns 0, or -1 when out of memory (the index is then unchanged). */
static int index_set(const char *key, const char *value) {
    struct node *f = malloc(sizeof *f);
    char *k = strdup(key), *v = strdup(value);
    if (f == NULL || k == NULL || v == NULL) {
        free(f);
        free(k);
        free(v);
        return -1;
    }
    *f = (struct node){.key = k, .value = v, .height = 1};
    struct node *fresh = f;
    g_root = insert(g_root, &fresh);
    if (fresh != NULL) { /* the key existed: its value was taken over */
        free(fresh->key);
        free(fresh);
    }
    return 0;
}

/* Detaches the smallest node of a non-empty subtree into *min. */
static struct node *take_min(struct node *n, struct node **min) {
    if (n->left == NULL) {
        *min = n;
        return n->right;
    }
    n->left = take_min(n->left, min);
    return rebalance(n);
}

static struct node *erase(struct node *n, const char *key, int *found) {
    if (n == NULL) return NULL;
    int c = strcmp(key, n->key);
    if (c < 0) n->left = erase(n->left, key, found);
    else if (c > 0) n->right = erase(n->right, key, found);
    else {
        *found = 1;
        struct node *l = n->left, *r = n->right;
        free(n->key);
        free(n->value);
        free(n);
        if (r == NULL) return l;
        struct node *min;
        r = take_min(r, &min);
        min->left = l;
        min->right = r;
        return rebalance(min);
    }
    return rebalance(n);
}

/* Returns 1 if the key was there. */
static int index_del(const char *key) {
    int found = 0;
    g_root = erase(g_root, key, &found);
    if (found) g_keys--;
    return found;
}

/* Prints, in key order, every entry whose key starts with prefix. Returns 0 once a
 * key at or after prefix lacks it: every later key lacks it too, so the walk stops. */
static int scan(const struct node *n, const char *prefix, size_t plen) {
    if (n == NULL) return 1;
    if (strcmp(n->key, prefix) >= 0) {
        if (!scan(n->left, prefix, plen)) return 0;
        if (strncmp(n->key, prefix, plen) != 0) return 0;
        printf("KEY %s %s\n", n->key, n->value);
    }
    return scan(n->right, prefix, plen);
}

/* ---- validation shared by the log and the protocol ---- */

static const char *check_key(const char *key) {
    size_t n = strlen(key);
    if (n == 0) return "empty key";
    if (n > MAX_KEY) return "key longer than 256 bytes";
    if (strchr(key, ' ') || strchr(key, '\t')) return "key contains whitespace";
    return NULL;
}

static const char *check_value(const char *value) {
    size_t n = strlen(value);
    if (n == 0) return "empty value";
    if (n > MAX_VALUE) return "value longer than 4096 bytes";
    return NULL;
}

/* ---- the append-only log ---- */

static int g_log_fd = -1;
static off_t g_log_size;

/* Applies one record (without its newline); returns NULL or why it is malformed. */
static const char *apply_record(char *rec) {
    if (rec[0] == 'S' && rec[1] == ' ') {
        char *key = rec + 2, *sp = strchr(key, ' ');
        if (sp == NULL) return "SET record without value";
        *sp = 0;
        const char *why = check_key(key);
        if (why == NULL) why = check_value(sp + 1);
        if (why != NULL) return why;
        return index_set(key, sp + 1) == 0 ? NULL : "out of memory";
    }
    if (rec[0] == 'D' && rec[1] == ' ') {
        const char *why = check_key(rec + 2);
        if (why != NULL) return why;
        index_del(rec + 2);
        return NULL;
    }
    return "unknown record type";
}

/* Opens the log, replays it into the index, and cuts off a torn last record. */
static int log_open(const char *path) {
    g_log_fd = open(path, O_RDWR | O_CREAT | O_APPEND, 0644);
    if (g_log_fd < 0) {
        fprintf(stderr, "kv_server: cannot open log %s: %s\n", path, errname(errno));
        return -1;
    }
    FILE *in = fopen(path, "r");
    if (in == NULL) {
        fprintf(stderr, "kv_server: cannot read log %s: %s\n", path, errname(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    off_t good = 0;
    unsigned long records = 0, lineno = 0;
    while ((len = getline(&line, &cap, in)) > 0) {
        lineno++;
        if (line[len - 1] != '\n') {
            fprintf(stderr, "kv_server: log %s: cutting off torn last record at byte %lld\n",
                    path, (long long)good);
            break;
        }
        line[len - 1] = 0;
        const char *why = (size_t)(len - 1) != strlen(line) ? "NUL byte in record"
                                                             : apply_record(line);
        if (why != NULL) {
            fprintf(stderr, "kv_server: log %s line %lu is corrupt: %s\n", path, lineno, why);
            free(line);
            fclose(in);
            return -1;
        }
        good += len;
        records++;
    }
    int read_error = ferror(in);
    free(line);
    fclose(in);
    if (read_error) {
        fprintf(stderr, "kv_server: reading log %s failed\n", path);
        return -1;
    }
    struct stat st;
    if (fstat(g_log_fd, &st) != 0) {
        fprintf(stderr, "kv_server: cannot stat log %s: %s\n", path, errname(errno));
        return -1;
    }
    if (st.st_size != good && ftruncate(g_log_fd, good) != 0) {
        fprintf(stderr, "kv_server: cannot cut log %s: %s\n", path, errname(errno));
        return -1;
    }
    g_log_size = good;
    fprintf(stderr, "kv_server: replayed %lu records (%zu keys) from %s\n", records, g_keys,
            path);
    return 0;
}

/* Appends one record; on failure removes any partial record and returns errno. */
static int log_append(const char *kind, const char *key, const char *value) {
    size_t klen = strlen(key), vlen = value ? strlen(value) : 0;
    size_t len = 2 + klen + (value ? 1 + vlen : 0) + 1;
    char *rec = malloc(len);
    if (rec == NULL) return ENOMEM;
    char *p = rec;
    *p++ = kind[0];
    *p++ = ' ';
    memcpy(p, key, klen);
    p += klen;
    if (value) {
        *p++ = ' ';
        memcpy(p, value, vlen);
        p += vlen;
    }
    *p = '\n';
    size_t done = 0;
    int err = 0;
    while (done < len) {
        ssize_t n = write(g_log_fd, rec + done, len - done);
        if (n < 0) {
            err = errno;
            break;
        }
        done += (size_t)n;
    }
    free(rec);
    if (err != 0) {
        if (done > 0) ftruncate(g_log_fd, g_log_size);
        return err;
    }
    g_log_size += (off_t)len;
    return 0;
}

/* ---- protocol ---- */

static void cmd_set(char *args) {
    char *sp = args ? strchr(args, ' ') : NULL;
    if (args == NULL || sp == NULL) {
        fputs("ERR SET needs a key and a value\n", stdout);
        return;
    }
    *sp = 0;
    const char *value = sp + 1;
    const char *why = check_key(args);
    if (why == NULL) why = check_value(value);
    if (why != NULL) {
        printf("ERR %s\n", why);
        return;
    }
    int err = log_append("S", args, value);
    if (err != 0) {
        printf("ERR log write failed: %s\n", errname(err));
        return;
    }
    if (index_set(args, value) != 0) {
        /* The log has the record; the index will have it after a restart. */
        fputs("ERR out of memory\n", stdout);
        return;
    }
    fputs("OK\n", stdout);
}

/* Validates the single-key argument of GET and DEL; answers ERR and returns NULL. */
static const char *one_key(const char *cmd, char *args) {
    if (args == NULL || strchr(args, ' ')) {
        printf("ERR %s needs exactly one key\n", cmd);
        return NULL;
    }
    const char *why = check_key(args);
    if (why != NULL) {
        printf("ERR %s\n", why);
        return NULL;
    }
    return args;
}

static void cmd_get(char *args) {
    const char *key = one_key("GET", args);
    if (key == NULL) return;
    const char *value = index_get(key);
    if (value) printf("VALUE %s\n", value);
    else fputs("NOT_FOUND\n", stdout);
}

static void cmd_del(char *args) {
    const char *key = one_key("DEL", args);
    if (key == NULL) return;
    if (index_get(key) == NULL) {
        fputs("NOT_FOUND\n", stdout);
        return;
    }
    int err = log_append("D", key, NULL);
    if (err != 0) {
        printf("ERR log write failed: %s\n", errname(err));
        return;
    }
    index_del(key);
    fputs("OK\n", stdout);
}

static void cmd_scan(char *args) {
    const char *prefix = args ? args : "";
    if (strchr(prefix, ' ')) {
        fputs("ERR SCAN takes at most one prefix\n", stdout);
        return;
    }
    scan(g_root, prefix, strlen(prefix));
    fputs("END\n", stdout);
}

static void handle(char *line, size_t len) {
    if (len > 0 && line[len - 1] == '\n') line[--len] = 0;
    if (len > 0 && line[len - 1] == '\r') line[--len] = 0;
    if (strlen(line) != len) {
        fputs("ERR line contains a NUL byte\n", stdout);
        return;
    }
    if (len == 0) {
        fputs("ERR empty command\n", stdout);
        return;
    }
    char *args = strchr(line, ' ');
    if (args) *args++ = 0;
    if (args && *args == 0) args = NULL;
    if (!strcmp(line, "SET")) cmd_set(args);
    else if (!strcmp(line, "GET")) cmd_get(args);
    else if (!strcmp(line, "DEL")) cmd_del(args);
    else if (!strcmp(line, "SCAN")) cmd_scan(args);
    else if (strlen(line) <= 16) printf("ERR unknown command '%s'\n", line);
    else fputs("ERR unknown command\n", stdout);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : getenv("KV_LOG");
    if (path == NULL || *path == 0) path = "/data/kv.log";
    if (log_open(path) != 0) return 1;

    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        handle(line, (size_t)len);
        fflush(stdout);
    }
    free(line);
    return 0;
}
