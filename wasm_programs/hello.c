/*
 * hello: the smallest useful guest. Prints a greeting and its arguments, one per
 * line, so tests can check argv passing and instantiate-and-run cost.
 *
 * Usage: hello [ARGS...]
 * Output: "hello from replicode", then "argc=N", then "argv[i]=<arg>" per argument.
 * Exit: 0.
 */
#include <stdio.h>

int main(int argc, char **argv) {
    printf("hello from replicode\n");
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++) {
        printf("argv[%d]=%s\n", i, argv[i]);
    }
    return 0;
}
