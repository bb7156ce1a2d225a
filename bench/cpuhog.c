/* CPU-heavy workload for bench/record_rate.py: P processes spinning for S seconds, making a
 * syscall only every few milliseconds, so the recording is mostly the scheduler's context switches.
 * Usage: cpuhog PROCS SECONDS */
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int procs = argc > 1 ? atoi(argv[1]) : 4;
    double seconds = argc > 2 ? atof(argv[2]) : 3;
    for (int p = 0; p < procs; p++) {
        if (fork() == 0) {
            double end = now() + seconds, next = 0;
            volatile unsigned long x = 0;
            while (now() < end) {
                x++;
                if (now() > next) {  /* a syscall now and then */
                    getppid();
                    next = now() + 0.005;
                }
            }
            _exit(0);
        }
    }
    while (wait(NULL) > 0)
        ;
    return 0;
}
