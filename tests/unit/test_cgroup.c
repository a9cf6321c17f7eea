/* test_cgroup: finding the container's memory limit, against fake cgroup
 * trees built under a temporary directory (NEAP_CGROUP_ROOT reads
 * root/proc/self/{cgroup,mountinfo} and the cgroup files under root):
 *   - v2: "max" everywhere is no limit; memory.max and memory.high, the
 *     smaller wins; a parent's limit binds a nested cgroup;
 *   - v2 inside a container: the mount's root is cut off the path;
 *   - v1: memory.limit_in_bytes, its "unlimited" (2^63 rounded to pages),
 *     a container without a cgroup namespace, nested limits;
 *   - hybrid (v2 mounted, memory on v1): v1 wins;
 *   - nothing readable: no limit;
 *   - end to end: a child with NEAP_CGROUP_ROOT and
 *     NEAP_MEMLIMIT_FRACTION gets that share as its limit (source cgroup),
 *     NEAP_MEMLIMIT overrides it, NEAP_MEMLIMIT=off turns it off.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "memlimit.h"
#include "neap.h"
#include "../test.h"

#define MiB ((uint64_t)1 << 20)

static char root[256];
static char self[4096];

/* mkdir -p root/dir */
static void mkdirs(const char *dir) {
  char p[2048];
  snprintf(p, sizeof p, "%s/%s", root, dir);
  for (char *s = p + strlen(root) + 1; *s; s++) {
    if (*s == '/') {
      *s = 0;
      mkdir(p, 0755);
      *s = '/';
    }
  }
  mkdir(p, 0755);
}

static void put(const char *file, const char *fmt, ...) {
  char p[2048];
  snprintf(p, sizeof p, "%s/%s", root, file);
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", file);
  char *slash = strrchr(dir, '/');
  if (slash) {
    *slash = 0;
    mkdirs(dir);
  }
  FILE *f = fopen(p, "w");
  if (f == NULL) {
    perror(p);
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fclose(f);
}

static void fresh_root(void) {
  char cmd[512];
  if (root[0]) {
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) perror("rm");
  }
  snprintf(root, sizeof root, "/tmp/neap-cgroup-XXXXXX");
  if (mkdtemp(root) == NULL) perror("mkdtemp");
}

static const char *MOUNT_V2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
                              "rw,nsdelegate,memory_recursiveprot\n";

static void test_v2(void) {
  fresh_root();
  put("proc/self/mountinfo", "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n%s", MOUNT_V2);
  put("proc/self/cgroup", "0::/user.slice/app.service\n");
  put("sys/fs/cgroup/user.slice/app.service/memory.max", "max\n");
  put("sys/fs/cgroup/user.slice/app.service/memory.high", "max\n");
  CHECK_EQ(neap__cgroup_limit(root), 0); /* "max" all the way up */
  put("sys/fs/cgroup/user.slice/app.service/memory.max", "%llu\n", 1024ull * MiB);
  CHECK_EQ(neap__cgroup_limit(root), 1024 * MiB);
  put("sys/fs/cgroup/user.slice/app.service/memory.high", "%llu\n", 768ull * MiB);
  CHECK_EQ(neap__cgroup_limit(root), 768 * MiB); /* memory.high is lower */
  put("sys/fs/cgroup/user.slice/memory.max", "%llu\n", 512ull * MiB);
  CHECK_EQ(neap__cgroup_limit(root), 512 * MiB); /* the parent binds */
  put("sys/fs/cgroup/user.slice/memory.max", "max\n");
  put("sys/fs/cgroup/memory.max", "%llu\n", 256ull * MiB); /* the mount's own level counts too */
  CHECK_EQ(neap__cgroup_limit(root), 256 * MiB);
}

static void test_v2_container(void) {
  /* A container without a cgroup namespace: /proc/self/cgroup names the
   * host's path, the mount shows the container's cgroup as its root. */
  fresh_root();
  put("proc/self/mountinfo",
      "600 500 0:26 /system.slice/docker-abc.scope /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 "
      "cgroup rw\n");
  put("proc/self/cgroup", "0::/system.slice/docker-abc.scope\n");
  put("sys/fs/cgroup/memory.max", "%llu\n", 300ull * MiB);
  CHECK_EQ(neap__cgroup_limit(root), 300 * MiB);
  /* With a namespace the path is "/" and the mount's root "/" too. */
  put("proc/self/mountinfo", "%s", MOUNT_V2);
  put("proc/self/cgroup", "0::/\n");
  CHECK_EQ(neap__cgroup_limit(root), 300 * MiB);
}

static void test_v1(void) {
  fresh_root();
  put("proc/self/mountinfo",
      "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
      "25 24 0:21 / /sys/fs/cgroup rw - tmpfs tmpfs ro,mode=755\n"
      "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
      "33 25 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n");
  put("proc/self/cgroup", "12:cpu,cpuacct:/batch/job7\n9:memory:/batch/job7\n1:name=systemd:/batch/job7\n");
  put("sys/fs/cgroup/memory/batch/job7/memory.limit_in_bytes", "9223372036854771712\n"); /* unlimited */
  CHECK_EQ(neap__cgroup_limit(root), 0);
  put("sys/fs/cgroup/memory/batch/memory.limit_in_bytes", "%llu\n", 2048ull * MiB);
  CHECK_EQ(neap__cgroup_limit(root), 2048 * MiB); /* nested: the parent's */
  put("sys/fs/cgroup/memory/batch/job7/memory.limit_in_bytes", "%llu\n", 100ull * MiB);
  CHECK_EQ(neap__cgroup_limit(root), 100 * MiB);
  /* Docker on v1 without a cgroup namespace: the mount's root is the
   * container's cgroup. */
  fresh_root();
  put("proc/self/mountinfo", "700 600 0:29 /docker/0123abcd /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n");
  put("proc/self/cgroup", "5:memory:/docker/0123abcd\n0::/\n");
  put("sys/fs/cgroup/memory/memory.limit_in_bytes", "%llu\n", 64ull * MiB);
  CHECK_EQ(neap__cgroup_limit(root), 64 * MiB);
}

static void test_hybrid_and_missing(void) {
  fresh_root();
  put("proc/self/mountinfo", "%s33 25 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
      "30 23 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
  put("proc/self/cgroup", "4:memory:/svc\n0::/svc\n");
  put("sys/fs/cgroup/memory/svc/memory.limit_in_bytes", "%llu\n", 200ull * MiB);
  put("sys/fs/cgroup/unified/svc/memory.max", "%llu\n", 900ull * MiB); /* no memory controller here */
  CHECK_EQ(neap__cgroup_limit(root), 200 * MiB);
  fresh_root();
  CHECK_EQ(neap__cgroup_limit(root), 0); /* nothing there at all */
  put("proc/self/cgroup", "0::/x\n"); /* no mountinfo */
  CHECK_EQ(neap__cgroup_limit(root), 0);
}

/* The child's view: its stats' limit and source. */
static int child_limit(const char *memlimit, const char *fraction, uint64_t *limit, uint64_t *source) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    setenv("NEAP_CGROUP_ROOT", root, 1);
    if (memlimit) setenv("NEAP_MEMLIMIT", memlimit, 1);
    else unsetenv("NEAP_MEMLIMIT");
    if (fraction) setenv("NEAP_MEMLIMIT_FRACTION", fraction, 1);
    else unsetenv("NEAP_MEMLIMIT_FRACTION");
    execl(self, self, "child", (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  char buf[256] = {0};
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  unsigned long long l = 0, s = 0;
  if (n <= 0 || sscanf(buf, "%llu %llu", &l, &s) != 2) return -1;
  *limit = l;
  *source = s;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_end_to_end(void) {
  fresh_root();
  put("proc/self/mountinfo", "%s", MOUNT_V2);
  put("proc/self/cgroup", "0::/app\n");
  put("sys/fs/cgroup/app/memory.max", "%llu\n", 1000ull * MiB);
  uint64_t limit = 0, source = 0;
  CHECK_EQ(child_limit(NULL, NULL, &limit, &source), 0);
  CHECK_EQ(limit, 900 * MiB); /* 90% by default */
  CHECK_EQ(source, NEAP_LIMIT_CGROUP);
  CHECK_EQ(child_limit(NULL, "50%", &limit, &source), 0);
  CHECK_EQ(limit, 500 * MiB);
  CHECK_EQ(child_limit("256MiB", NULL, &limit, &source), 0);
  CHECK_EQ(limit, 256 * MiB);
  CHECK_EQ(source, NEAP_LIMIT_ENV);
  CHECK_EQ(child_limit("1.5GiB", NULL, &limit, &source), 0);
  CHECK_EQ(limit, 1536 * MiB);
  CHECK_EQ(child_limit("off", NULL, &limit, &source), 0);
  CHECK_EQ(limit, 0);
  CHECK_EQ(source, NEAP_LIMIT_NONE);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "child") == 0) {
    neap_free(neap_malloc(1));
    neap_stats_t st;
    neap_stats_read(&st, sizeof st);
    printf("%llu %llu\n", (unsigned long long)st.memlimit, (unsigned long long)st.memlimit_source);
    return 0;
  }
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return 1;
  self[n] = 0;
  RUN(test_v2);
  RUN(test_v2_container);
  RUN(test_v1);
  RUN(test_hybrid_and_missing);
  RUN(test_end_to_end);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0) perror("rm");
  return TEST_DONE();
}
