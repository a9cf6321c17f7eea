/* test_options: NEAPDEBUG parsing, through the real path: the test runs
 * itself again with NEAPDEBUG set, and the child (where the library
 * constructor parsed the environment) prints what it got. */
#include <stdlib.h>
#include <string.h>

#include "neap.h"
#include "options.h"
#include "../test.h"

static char self[4096];

/* Runs this program with NEAPDEBUG=value (NULL: unset); stdout and stderr
 * go to out. Returns the exit status. */
static int run_with(const char *value, char *out, size_t cap) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    if (value) setenv("NEAPDEBUG", value, 1);
    else unsetenv("NEAPDEBUG");
    execl(self, self, "child", (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  size_t n = 0;
  ssize_t r;
  while (n + 1 < cap && (r = read(fds[0], out + n, cap - 1 - n)) > 0) n += (size_t)r;
  out[n] = 0;
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int has(const char *out, const char *line) {
  size_t n = strlen(line);
  for (const char *s = out; s && *s; s = strchr(s, '\n'), s = s ? s + 1 : s)
    if (strncmp(s, line, n) == 0 && (s[n] == '\n' || s[n] == 0)) return 1;
  return 0;
}

static void test_parse(void) {
  char out[4096];
  CHECK_EQ(run_with(NULL, out, sizeof out), 0);
  CHECK(has(out, "warnforeign=0 printopts=0"));
  CHECK_EQ(run_with("warnforeign=2", out, sizeof out), 0);
  CHECK(has(out, "warnforeign=2 printopts=0"));
  CHECK_EQ(run_with("printopts=yes,warnforeign=1", out, sizeof out), 0);
  CHECK(has(out, "warnforeign=1 printopts=1"));
  CHECK(strstr(out, "neap: option warnforeign=1  (") != NULL); /* the dump */
  CHECK(strstr(out, "neap: option printopts=1  (") != NULL);
  const char *yes[] = {"printopts=1", "printopts=true", "printopts=on", "printopts=yes"};
  for (size_t i = 0; i < 4; i++) {
    CHECK_EQ(run_with(yes[i], out, sizeof out), 0);
    CHECK(has(out, "warnforeign=0 printopts=1"));
  }
  const char *no[] = {"printopts=0", "printopts=false", "printopts=off", "printopts=no"};
  for (size_t i = 0; i < 4; i++) {
    CHECK_EQ(run_with(no[i], out, sizeof out), 0);
    CHECK(has(out, "warnforeign=0 printopts=0"));
  }
}

static void test_bad_input(void) {
  char out[4096];
  /* Out of range, not a number, no value: warned about, default kept,
   * and the good keys around them still apply. */
  CHECK_EQ(run_with("warnforeign=3,printopts=1", out, sizeof out), 0);
  CHECK(has(out, "neap: NEAPDEBUG: bad value for 'warnforeign', default kept"));
  CHECK(has(out, "warnforeign=0 printopts=1"));
  CHECK_EQ(run_with("warnforeign=x1", out, sizeof out), 0);
  CHECK(has(out, "neap: NEAPDEBUG: bad value for 'warnforeign', default kept"));
  CHECK_EQ(run_with("printopts,warnforeign=1", out, sizeof out), 0);
  CHECK(has(out, "neap: NEAPDEBUG: bad value for 'printopts', default kept"));
  CHECK(has(out, "warnforeign=1 printopts=0"));
  CHECK_EQ(run_with("bogus=1,,warnforeign=2,", out, sizeof out), 0);
  CHECK(has(out, "neap: NEAPDEBUG: unknown key 'bogus', ignored"));
  CHECK(has(out, "warnforeign=2 printopts=0"));
  CHECK_EQ(run_with("", out, sizeof out), 0);
  CHECK(has(out, "warnforeign=0 printopts=0"));
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "child") == 0) {
    neap_free(neap_malloc(1)); /* as any program: the library is linked in, its constructor ran */
    printf("warnforeign=%ld printopts=%ld\n", neap__opt.warnforeign, neap__opt.printopts);
    return 0;
  }
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return 1;
  self[n] = 0;
  RUN(test_parse);
  RUN(test_bad_input);
  return TEST_DONE();
}
