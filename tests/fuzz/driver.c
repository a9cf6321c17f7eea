/* The plain driver for the fuzz targets: the same harness as libFuzzer
 * runs, built with gcc (plain, ASan+UBSan, TSan) for long runs and for
 * replaying the corpus.
 *
 *   fuzz_api [--seed N] [--seconds S] [--ops N] [--threads N] [--check-every N]
 *       random streams from the seed (printed, so that any finding can be
 *       run again) for S seconds (default: NEAP_FUZZ_SECONDS, else 5) or
 *       N operations;
 *   fuzz_api FILE|DIR...
 *       runs each file (each file of each directory) as one input, as
 *       libFuzzer does with files for arguments.
 * The last line says what was done: operations, their rate, heap checks.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

static unsigned long run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    exit(2);
  }
  static uint8_t buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  LLVMFuzzerTestOneInput(buf, n);
  return 1;
}

static unsigned long run_path(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    perror(path);
    exit(2);
  }
  if (!S_ISDIR(st.st_mode)) return run_file(path);
  DIR *d = opendir(path);
  if (d == NULL) {
    perror(path);
    exit(2);
  }
  unsigned long n = 0;
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL) {
    if (ent->d_name[0] == '.') continue;
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/%s", path, ent->d_name);
    n += run_path(sub);
  }
  closedir(d);
  return n;
}

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

int main(int argc, char **argv) {
  fuzz_run run = {.seconds = 5, .threads = 1};
  const char *env = getenv("NEAP_FUZZ_SECONDS");
  if (env != NULL && atof(env) > 0) run.seconds = atof(env);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  run.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
  unsigned long files = 0;
  bool any_file = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--seed") == 0 && i + 1 < argc) run.seed = strtoull(argv[++i], NULL, 0);
    else if (strcmp(a, "--seconds") == 0 && i + 1 < argc) run.seconds = atof(argv[++i]);
    else if (strcmp(a, "--ops") == 0 && i + 1 < argc) run.max_ops = strtoull(argv[++i], NULL, 0), run.seconds = 1e9;
    else if (strcmp(a, "--threads") == 0 && i + 1 < argc) run.threads = atoi(argv[++i]);
    else if (strcmp(a, "--check-every") == 0 && i + 1 < argc) run.check_every = strtoull(argv[++i], NULL, 0);
    else if (a[0] == '-') {
      fprintf(stderr, "usage: %s [--seed N] [--seconds S] [--ops N] [--threads N] [--check-every N] [FILE|DIR...]\n",
              argv[0]);
      return 2;
    } else {
      any_file = true;
      files += run_path(a);
    }
  }
  if (any_file) {
    printf("%s: %lu inputs replayed, no finding\n", base_name(argv[0]), files);
    return 0;
  }
  fprintf(stderr, "%s: seed %llu, %d thread(s)\n", base_name(argv[0]), (unsigned long long)run.seed, run.threads);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double t0 = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
  fuzz_random(&run);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double t = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 - t0;
  printf("%s: %llu operations in %.1f s (%.0f/s), %llu heap checks, seed %llu, %d thread(s), no finding\n",
         base_name(argv[0]), (unsigned long long)run.ops, t, (double)run.ops / t, (unsigned long long)run.checks,
         (unsigned long long)run.seed, run.threads);
  return 0;
}
