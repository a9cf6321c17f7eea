/* neap: the command-line tool.
 *
 *   neap run [OPTIONS] [--] CMD [ARGS...]   run CMD with libneap preloaded
 *   neap stats PID [--json|--prom] [--watch S]   a neap process's live stats
 *   neap inspect PID                        explain any process's memory
 *   neap serve [--listen HOST:PORT] PID...  /metrics for Prometheus
 *   neap demo                               the peak-and-return demo
 *
 * The tool is an ordinary program: it uses libc's malloc, never neap's,
 * so that it can inspect a process without perturbing it.
 *
 * `run` finds the library next to the tool (build/neap beside
 * build/libneap.so) or in the lib directory of an installed prefix, puts it first in
 * LD_PRELOAD (an existing LD_PRELOAD is kept after it: neap must come first
 * to be the malloc that wins) and execs CMD in place. Exec, not fork: the
 * exit status, signals, the process id and the terminal stay the
 * program's own, which is what passing the exit status through means.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

#ifndef NEAP_VERSION
#define NEAP_VERSION "unknown"
#endif
#ifndef NEAP_LIBDIR
#define NEAP_LIBDIR "lib"
#endif
#define LIBNAME "libneap.so"

static const char usage_main[] =
    "usage: neap <command> [options]\n"
    "\n"
    "neap is a memory manager for C and C++ programs (a malloc built on the\n"
    "Go runtime's allocator). This tool runs programs with it and explains\n"
    "where a process's memory goes.\n"
    "\n"
    "commands:\n"
    "  run [OPTIONS] [--] CMD [ARGS...]   run CMD with libneap.so preloaded\n"
    "  stats PID [--json|--prom] [--watch SECONDS]\n"
    "                                     a neap process's live statistics\n"
    "  inspect PID                        explain any process's memory (Go, Java,\n"
    "                                     glibc, neap...) from /proc\n"
    "  serve [--listen HOST:PORT] PID...  serve /metrics (Prometheus) for neap\n"
    "                                     processes\n"
    "  demo                               peak, fragmentation, a collected heap: against glibc and Boehm\n"
    "\n"
    "options:\n"
    "  -h, --help               this help ('neap COMMAND --help' for a command's)\n"
    "  --version                print the version\n";

static const char usage_run[] =
    "usage: neap run [--memlimit SIZE] [--trace] [--stats] [--] CMD [ARGS...]\n"
    "\n"
    "Runs CMD with neap as its malloc: libneap.so (found next to this tool,\n"
    "or in the lib directory of its install prefix) goes first in LD_PRELOAD,\n"
    "ahead of anything already there, and CMD replaces this process, so its\n"
    "exit status (or the signal that ends it) is the tool's own. CMD is\n"
    "looked up in PATH. Use -- when CMD itself starts with '-'.\n"
    "\n"
    "options:\n"
    "  --memlimit SIZE   a memory limit on what neap holds (NEAP_MEMLIMIT:\n"
    "                    e.g. 512MiB, 2GiB, off)\n"
    "  --trace           one line per scavenger cycle on stderr\n"
    "                    (NEAPDEBUG=scavtrace=1)\n"
    "  --stats           print the statistics to stderr at exit\n"
    "                    (NEAPDEBUG=statsonexit=1)\n"
    "\n"
    "neap reads its other settings from the environment: NEAP_* variables and\n"
    "NEAPDEBUG=key=value,... (see README.md), e.g.\n"
    "  NEAPDEBUG=warnforeign=1 neap run -- python3 script.py\n"
    "\n"
    "exit status: CMD's; 127 if CMD cannot be found, 126 if it cannot be\n"
    "run, 2 for a usage error, 1 if libneap.so cannot be found.\n";

static const char usage_demo[] =
    "usage: neap demo\n"
    "\n"
    "Runs the demo (build/neap-demo, about 40 s): a program that reaches a\n"
    "peak and frees it, and one that fragments its heap, under glibc and\n"
    "under neap; then the seed's program on a garbage collector, under Boehm\n"
    "GC and under neap's; with RSS sampled every 100 ms. Prints the tables\n"
    "and writes SVG plots. Arguments after 'demo' go to neap-demo.\n";

/* The directory holding this executable, or NULL. */
static char *self_dir(void) {
  static char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return NULL;
  buf[n] = '\0';
  char *slash = strrchr(buf, '/');
  if (slash == NULL) return NULL;
  *slash = '\0';
  return buf;
}

/* Path of libneap.so for this tool, or NULL. */
static char *find_library(void) {
  static char path[PATH_MAX + 64];
  const char *dir = self_dir();
  if (dir == NULL) return NULL;
  const char *candidates[] = {"%s/" LIBNAME, "%s/../" NEAP_LIBDIR "/" LIBNAME, "%s/../lib/" LIBNAME};
  for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
    snprintf(path, sizeof path, candidates[i], dir);
    if (access(path, R_OK) == 0) return path;
  }
  return NULL;
}

/* Appends key=value to NEAPDEBUG (keeping what is there). */
static int add_debug(const char *kv) {
  const char *old = getenv("NEAPDEBUG");
  if (old == NULL || *old == '\0') return setenv("NEAPDEBUG", kv, 1);
  size_t n = strlen(old) + 1 + strlen(kv) + 1;
  char *both = malloc(n);
  if (both == NULL) return -1;
  snprintf(both, n, "%s,%s", old, kv);
  int r = setenv("NEAPDEBUG", both, 1);
  free(both);
  return r;
}

static int cmd_run(int argc, char **argv) {
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage_run, stdout);
      return 0;
    } else if (strcmp(a, "--") == 0) {
      i++;
      break;
    } else if (strcmp(a, "--memlimit") == 0 && i + 1 < argc) {
      setenv("NEAP_MEMLIMIT", argv[++i], 1);
    } else if (strncmp(a, "--memlimit=", 11) == 0) {
      setenv("NEAP_MEMLIMIT", a + 11, 1);
    } else if (strcmp(a, "--trace") == 0) {
      add_debug("scavtrace=1");
    } else if (strcmp(a, "--stats") == 0) {
      add_debug("statsonexit=1");
    } else {
      fprintf(stderr, "neap run: unknown option '%s'\n\n%s", a, usage_run);
      return 2;
    }
  }
  if (i >= argc) {
    fprintf(stderr, "neap run: no command given\n\n%s", usage_run);
    return 2;
  }
  const char *lib = find_library();
  if (lib == NULL) {
    fprintf(stderr, "neap run: cannot find %s next to this tool\n", LIBNAME);
    return 1;
  }
  const char *old = getenv("LD_PRELOAD");
  if (old != NULL && *old != '\0') {
    size_t n = strlen(lib) + 1 + strlen(old) + 1;
    char *both = malloc(n);
    if (both == NULL) {
      perror("neap run");
      return 1;
    }
    snprintf(both, n, "%s:%s", lib, old);
    setenv("LD_PRELOAD", both, 1);
  } else {
    setenv("LD_PRELOAD", lib, 1);
  }
  execvp(argv[i], argv + i);
  int err = errno;
  fprintf(stderr, "neap run: %s: %s\n", argv[i], strerror(err));
  return err == ENOENT ? 127 : 126;
}

/* Runs neap-demo, found next to this tool (it is built into build/). */
static int cmd_demo(int argc, char **argv) {
  if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
    fputs(usage_demo, stdout);
    return 0;
  }
  static char path[PATH_MAX + 16];
  const char *dir = self_dir();
  snprintf(path, sizeof path, "%s/neap-demo", dir ? dir : ".");
  if (access(path, X_OK) != 0) {
    fprintf(stderr, "neap demo: cannot find %s (the demo is built in build/, not installed)\n", path);
    return 1;
  }
  argv[0] = path;
  execv(path, argv);
  fprintf(stderr, "neap demo: %s: %s\n", path, strerror(errno));
  return 126;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage_main, stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
    fputs(usage_main, stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0) {
    printf("neap %s\n", NEAP_VERSION);
    return 0;
  }
  if (strcmp(cmd, "run") == 0) return cmd_run(argc - 1, argv + 1);
  if (strcmp(cmd, "stats") == 0) return cmd_stats(argc - 1, argv + 1);
  if (strcmp(cmd, "inspect") == 0) return cmd_inspect(argc - 1, argv + 1);
  if (strcmp(cmd, "serve") == 0) return cmd_serve(argc - 1, argv + 1);
  if (strcmp(cmd, "demo") == 0) return cmd_demo(argc - 1, argv + 1);
  fprintf(stderr, "neap: unknown command '%s'\n\n%s", cmd, usage_main);
  return 2;
}
