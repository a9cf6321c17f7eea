/* neap: the command-line tool.
 *
 *   neap run [--] CMD [ARGS...]   run CMD with libneap preloaded
 *
 * Later subcommands (stats, explain...) join the table in main. The tool is
 * an ordinary program: it uses libc's malloc, never neap's, so that it can
 * inspect a process without perturbing it.
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
    "Go runtime's allocator). This tool runs programs with it.\n"
    "\n"
    "commands:\n"
    "  run [--] CMD [ARGS...]   run CMD with libneap.so preloaded\n"
    "\n"
    "options:\n"
    "  -h, --help               this help ('neap run --help' for run's)\n"
    "  --version                print the version\n";

static const char usage_run[] =
    "usage: neap run [--] CMD [ARGS...]\n"
    "\n"
    "Runs CMD with neap as its malloc: libneap.so (found next to this tool,\n"
    "or in the lib directory of its install prefix) goes first in LD_PRELOAD,\n"
    "ahead of anything already there, and CMD replaces this process, so its\n"
    "exit status (or the signal that ends it) is the tool's own. CMD is\n"
    "looked up in PATH. Use -- when CMD itself starts with '-'.\n"
    "\n"
    "neap reads its settings from the environment: NEAP_* variables and\n"
    "NEAPDEBUG=key=value,... (see README.md), e.g.\n"
    "  NEAPDEBUG=warnforeign=1 neap run -- python3 script.py\n"
    "\n"
    "exit status: CMD's; 127 if CMD cannot be found, 126 if it cannot be\n"
    "run, 2 for a usage error, 1 if libneap.so cannot be found.\n";

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

static int cmd_run(int argc, char **argv) {
  int i = 1;
  if (i < argc && (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)) {
    fputs(usage_run, stdout);
    return 0;
  }
  if (i < argc && strcmp(argv[i], "--") == 0) i++;
  else if (i < argc && argv[i][0] == '-') {
    fprintf(stderr, "neap run: unknown option '%s'\n\n%s", argv[i], usage_run);
    return 2;
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
  fprintf(stderr, "neap: unknown command '%s'\n\n%s", cmd, usage_main);
  return 2;
}
