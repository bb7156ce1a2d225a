/* Syscall-heavy workload for bench/record_rate.py: N x (openat + close) of one path, optionally
 * paced to RATE pairs per second (0 = as fast as possible). Usage: openclose N [PATH] [RATE] */
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    const char *path = argc > 2 ? argv[2] : "/dev/null";
    double rate = argc > 3 ? atof(argv[3]) : 0;
    double start = now();
    for (long i = 0; i < n; i++) {
        int fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
        if (rate > 0 && i % 1000 == 999) {
            double ahead = (i + 1) / rate - (now() - start);
            if (ahead > 0)
                usleep((useconds_t)(ahead * 1e6));
        }
    }
    return 0;
}
