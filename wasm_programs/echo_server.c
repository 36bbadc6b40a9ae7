/*
 * echo_server: the smallest long-running server. It blocks reading stdin, so under
 * the runtime every line is one input delivered later by a transaction, and the
 * process suspends between lines.
 *
 * Usage: echo_server
 * For each input line L (any length) it writes "echo: L" (with a newline, added if
 * the last line had none) and flushes, so each answer is attributed to its input.
 * Exit: 0 at EOF on stdin; 1 if reading stdin or writing stdout fails.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        int has_newline = len > 0 && line[len - 1] == '\n';
        if (fputs("echo: ", stdout) == EOF || fwrite(line, 1, (size_t)len, stdout) != (size_t)len ||
            (!has_newline && fputc('\n', stdout) == EOF) || fflush(stdout) == EOF) {
            fprintf(stderr, "echo_server: writing stdout failed: %s\n", strerror(errno));
            return 1;
        }
    }
    free(line);
    if (ferror(stdin)) {
        fprintf(stderr, "echo_server: reading stdin failed: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
