/* neap stats PID [--json|--prom] [--watch SECONDS]: a neap process's live
 * statistics, read from the file it publishes (common.c checks it), in
 * the library's own formats (src/statsfmt.c, compiled into the tool). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "statsfmt.h"
#include "tool.h"

static const char usage[] =
    "usage: neap stats PID [--json | --prom] [--watch SECONDS]\n"
    "\n"
    "Prints the live statistics of neap process PID: what its heap holds,\n"
    "what it gave back to the OS, its metadata, its memory limit, its\n"
    "scavenger's work, and the kernel's view at the same moment.\n"
    "\n"
    "A neap process publishes them in /dev/shm/neap.PID (NEAP_STATS_DIR),\n"
    "refreshed at most once a second, once its heap has passed 8 MiB.\n"
    "\n"
    "options:\n"
    "  --json            one JSON object\n"
    "  --prom            the Prometheus text format\n"
    "  --watch SECONDS   print again every SECONDS until the process ends\n"
    "  -h, --help        this help\n"
    "\n"
    "exit status: 0; 1 if the stats cannot be read (no such process, not a\n"
    "neap process, permission denied); 2 for a usage error.\n";

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

int cmd_stats(int argc, char **argv) {
  neap_stats_format format = NEAP_STATS_TEXT;
  double watch = 0;
  pid_t pid = 0;
  bool have_pid = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage, stdout);
      return 0;
    } else if (strcmp(a, "--json") == 0) {
      format = NEAP_STATS_JSON;
    } else if (strcmp(a, "--prom") == 0 || strcmp(a, "--prometheus") == 0) {
      format = NEAP_STATS_PROMETHEUS;
    } else if (strcmp(a, "--watch") == 0) {
      char *end;
      if (i + 1 >= argc || (watch = strtod(argv[i + 1], &end)) <= 0 || *end != '\0') {
        fprintf(stderr, "neap stats: --watch needs a number of seconds > 0\n");
        return 2;
      }
      i++;
    } else if (a[0] == '-') {
      fprintf(stderr, "neap stats: unknown option '%s' (see neap stats --help)\n", a);
      return 2;
    } else if (have_pid) {
      fprintf(stderr, "neap stats: one process at a time (see neap stats --help)\n");
      return 2;
    } else {
      if (!tool_parse_pid("stats", a, &pid)) return 2;
      have_pid = true;
    }
  }
  if (!have_pid) {
    fprintf(stderr, "neap stats: no process id given (see neap stats --help)\n");
    return 2;
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  for (int round = 0; !stop; round++) {
    neap_stats_t s;
    char why[512];
    if (tool_read_stats(pid, &s, why, sizeof why) != 0) {
      if (round > 0 && tool_process_state(pid) != 0) {
        fprintf(stderr, "neap stats: process %d has ended\n", (int)pid);
        return 0;
      }
      fprintf(stderr, "neap stats: %s\n", why);
      return 1;
    }
    if (watch > 0 && format == NEAP_STATS_TEXT) {
      time_t now = time(NULL);
      char when[32];
      strftime(when, sizeof when, "%H:%M:%S", localtime(&now));
      printf("--- process %d at %s\n", (int)pid, when);
    }
    neap_stats_format_snapshot(&s, tool_write_file, stdout, format);
    fflush(stdout);
    if (watch <= 0) break;
    struct timespec ts = {.tv_sec = (time_t)watch, .tv_nsec = (long)((watch - (double)(time_t)watch) * 1e9)};
    nanosleep(&ts, NULL);
  }
  return 0;
}
