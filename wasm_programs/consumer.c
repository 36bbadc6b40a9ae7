/*
 * consumer: second half of the pipeline pair (producer | consumer). Reads lines
 * from stdin until EOF, checks they are "item <i> ..." numbered 1, 2, 3, ... in
 * order, and prints a summary, so a test sees at once whether bytes were lost,
 * duplicated or reordered in the pipe.
 *
 * Usage: consumer [-q]
 *   Echoes each line as "got: <line>" (unless -q), then at EOF prints
 *   "consumer: lines=N sum=S bytes=B order=ok" (order=BROKEN at line K otherwise),
 *   where S is the sum of the item numbers and B counts every byte read.
 * Exit: 0 if the order was intact; 1 if not or if reading stdin failed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int quiet = argc > 1 && strcmp(argv[1], "-q") == 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long long lines = 0, sum = 0, bytes = 0, broken_at = 0;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        lines++;
        bytes += (unsigned long long)len;
        unsigned long long item = 0;
        char *end = NULL;
        if (strncmp(line, "item ", 5) == 0) item = strtoull(line + 5, &end, 10);
        int well_formed = end != NULL && end != line + 5 && (*end == ' ' || *end == '\n' || *end == 0);
        if (!well_formed || item != lines) {
            if (broken_at == 0) broken_at = lines;
        } else {
            sum += item;
        }
        if (!quiet) {
            fputs("got: ", stdout);
            fwrite(line, 1, (size_t)len, stdout);
            if (len == 0 || line[len - 1] != '\n') fputc('\n', stdout);
            /* Flushed per line so each echo is attributed to the input that caused it. */
            fflush(stdout);
        }
    }
    free(line);
    if (ferror(stdin)) {
        fprintf(stderr, "consumer: reading stdin failed: %s\n", strerror(errno));
        return 1;
    }
    if (broken_at == 0) {
        printf("consumer: lines=%llu sum=%llu bytes=%llu order=ok\n", lines, sum, bytes);
        return 0;
    }
    printf("consumer: lines=%llu sum=%llu bytes=%llu order=BROKEN at line %llu\n", lines, sum,
           bytes, broken_at);
    return 1;
}
