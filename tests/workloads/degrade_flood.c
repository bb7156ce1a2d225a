/* Recorded by tests/test_degrade_kernel.py: a getppid flood that overflows the syscall stream lane,
 * with fd changes (open, dup, dup2, close) between its bursts, and after every change the process's
 * own fd table as the kernel has it (/proc/self/fd), read at a known CLOCK_MONOTONIC instant.
 *
 * Usage: degrade_flood STEPS CALLS OUT
 *   STEPS fd changes, each after a burst of CALLS getppid(); OUT gets one line per sample,
 *   "<ns> <fd>=<target> ..." (the instant is taken before /proc/self/fd is opened, and that
 *   directory's own fd is left out), then "getppid <n>": how many getppid() the program made. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long made;
static char out[1 << 20];
static size_t used;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void flood(long n) {
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    made += n;
}

static void sample(void) {
    long long t = now_ns();
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        exit(2);
    int self = dirfd(d);
    used += snprintf(out + used, sizeof out - used, "%lld", t);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == self)
            continue;
        char link[300], target[512];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        used += snprintf(out + used, sizeof out - used, " %s=%s", e->d_name, target);
    }
    closedir(d);
    used += snprintf(out + used, sizeof out - used, "\n");
}

int main(int argc, char **argv) {
    if (argc != 4)
        return 2;
    long steps = atol(argv[1]), calls = atol(argv[2]);
    int open_fds[64], n = 0;
    const char *paths[] = {"/dev/null", "/etc/hostname", "/proc/version"};
    sample();
    for (long s = 0; s < steps; s++) {
        flood(calls);
        switch (s % 5) {
        case 0: case 3:
            if (n < 60)
                open_fds[n++] = open(paths[s % 3], O_RDONLY | (s % 2 ? O_CLOEXEC : 0));
            break;
        case 1:
            if (n && n < 60) {
                open_fds[n] = dup(open_fds[n - 1]);
                n++;
            }
            break;
        case 2:
            if (n)
                dup2(open_fds[0], 40 + (int)(s % 7));
            break;
        case 4:
            if (n) {
                close(open_fds[0]);
                for (int i = 1; i < n; i++)
                    open_fds[i - 1] = open_fds[i];
                n--;
            }
            break;
        }
        sample();
    }
    flood(calls);
    used += snprintf(out + used, sizeof out - used, "getppid %ld\n", made);
    FILE *f = fopen(argv[3], "w");
    if (!f)
        return 2;
    fwrite(out, 1, used, f);
    fclose(f);
    return 0;
}
