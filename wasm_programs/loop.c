/*
 * loop: a guest that never finishes, to prove the runtime stops it by fuel (never by
 * wall-clock time) at the same point on every validator.
 *
 * Usage: loop
 * Output: "loop: starting" then nothing. Exit: never returns on its own.
 *
 * The counter is volatile so the optimizer cannot prove the loop side-effect free
 * and delete it.
 */
#include <stdio.h>

int main(void) {
    volatile unsigned long long spins = 0;
    printf("loop: starting\n");
    fflush(stdout);
    for (;;) {
        spins = spins + 1;
    }
}
