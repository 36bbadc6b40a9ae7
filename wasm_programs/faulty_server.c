/*
 * faulty_server: a line server that can be told to fail in the middle of handling
 * an input, after it has already changed its memory, its file and its output. It
 * is the test material for atomic rollback: after a trap or fuel exhaustion the
 * runtime must put the process and its files back exactly as before that input.
 *
 * Usage: faulty_server [LOG_PATH]   (default /data/faulty.log)
 * For every input line L it first increments an in-memory counter K, appends
 * "K L" to LOG_PATH (written through, not buffered), and prints "input K: L"
 * (flushed). Then, depending on L:
 *   trap     -> executes an unreachable instruction (a wasm trap; SIGILL natively)
 *   loop     -> spins forever (only fuel exhaustion stops it)
 *   exit N   -> exits with status N
 *   anything else -> prints "ok K" and waits for the next line.
 * So after a rolled-back "trap" or "loop", the next input must again be number K
 * and the log must not contain the failed line.
 * Exit: 0 at EOF on stdin; N for "exit N"; 1 if the log cannot be written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errname.h"

static unsigned long g_inputs;

static int append_line(int fd, unsigned long k, const char *line) {
    char head[32];
    int hlen = snprintf(head, sizeof head, "%lu ", k);
    size_t len = strlen(line);
    if (write(fd, head, (size_t)hlen) != hlen || write(fd, line, len) != (ssize_t)len ||
        write(fd, "\n", 1) != 1) {
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/data/faulty.log";
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) {
        fprintf(stderr, "faulty_server: cannot open %s: %s\n", path, errname(errno));
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        if (len > 0 && line[len - 1] == '\n') line[--len] = 0;
        unsigned long k = ++g_inputs;
        if (append_line(fd, k, line) != 0) {
            fprintf(stderr, "faulty_server: writing %s failed: %s\n", path, errname(errno));
            return 1;
        }
        printf("input %lu: %s\n", k, line);
        fflush(stdout);
        if (strcmp(line, "trap") == 0) {
            __builtin_trap();
        } else if (strcmp(line, "loop") == 0) {
            volatile unsigned long spin = 0;
            for (;;) spin = spin + 1;
        } else if (strncmp(line, "exit ", 5) == 0) {
            return atoi(line + 5);
        }
        printf("ok %lu\n", k);
        fflush(stdout);
    }
    free(line);
    return 0;
}
