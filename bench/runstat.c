/* runstat: run a command, print what it cost.
 *
 *   runstat [-o FILE] -- CMD ARGS...
 *
 * Forks, execs CMD (searched in PATH), waits for it with wait4 and prints
 * one line:
 *
 *   elapsed_s user_s sys_s maxrss_kib minflt exit_status
 *
 * to stdout, or appended to FILE with -o. elapsed_s is CLOCK_MONOTONIC time
 * from just before the fork to the end of the wait. user_s, sys_s and minflt
 * add up CMD and every descendant it waited for; maxrss_kib is the peak
 * resident set of the largest single process among them (that is what the
 * kernel keeps), not a sum. exit_status is CMD's exit code, or 128 + the
 * signal number when a signal killed it. runstat exits with the same status
 * (127 when CMD cannot be run, 2 for bad usage). Plain C, no dependencies:
 * cc -O2 -o runstat runstat.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void usage(void)
{
    fprintf(stderr, "usage: runstat [-o FILE] -- CMD ARGS...\n");
    exit(2);
}

static double seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    const char *outfile = NULL;
    int i = 1;
    while (i < argc) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            outfile = argv[i + 1];
            i += 2;
        } else if (argv[i][0] == '-') {
            usage();
        } else {
            break; /* CMD without a "--" in front */
        }
    }
    if (i >= argc)
        usage();
    char **cmd = argv + i;

    /* Open the output first: an unusable FILE should fail before CMD runs. */
    FILE *out = stdout;
    if (outfile) {
        out = fopen(outfile, "a");
        if (!out) {
            fprintf(stderr, "runstat: %s: %s\n", outfile, strerror(errno));
            return 2;
        }
    }
    fflush(NULL);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "runstat: fork: %s\n", strerror(errno));
        return 2;
    }
    if (pid == 0) {
        execvp(cmd[0], cmd);
        fprintf(stderr, "runstat: %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }

    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "runstat: wait4: %s\n", strerror(errno));
            return 2;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);

    int code;
    if (WIFEXITED(status))
        code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        code = 128 + WTERMSIG(status);
    else
        code = 255;
    double elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(out, "%.3f %.3f %.3f %ld %ld %d\n", elapsed, seconds(ru.ru_utime), seconds(ru.ru_stime),
            ru.ru_maxrss, ru.ru_minflt, code);
    if (fclose(out) != 0) {
        fprintf(stderr, "runstat: writing %s: %s\n", outfile ? outfile : "stdout", strerror(errno));
        return 2;
    }
    return code;
}
