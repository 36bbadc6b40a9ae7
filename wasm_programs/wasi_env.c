/*
 * wasi_env: prints its environment and working-directory view, so tests can check
 * environ passing and that nothing of the host's environment leaks in.
 *
 * Usage: wasi_env [NAME...]
 * Output: "environ[i]=<entry>" per entry, then "getenv(NAME)=<value|(null)>" per NAME.
 * Exit: 0.
 */
#include <stdio.h>
#include <stdlib.h>

extern char **environ;

int main(int argc, char **argv) {
    for (int i = 0; environ[i]; i++) printf("environ[%d]=%s\n", i, environ[i]);
    for (int i = 1; i < argc; i++) {
        const char *v = getenv(argv[i]);
        printf("getenv(%s)=%s\n", argv[i], v ? v : "(null)");
    }
    return 0;
}
