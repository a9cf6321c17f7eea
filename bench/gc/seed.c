/* The seed incident, in C: a service that builds a 256 MiB buffer, uses
 * it and drops it, ten times, then goes quiet. Under Go the dead buffer
 * stayed resident (531 MiB) until the forced collection two minutes
 * later. What matters is the RSS after the last drop: the run samples it
 * every 100 ms for IDLE seconds (-d, default 10) and prints it at 1 s, 5 s
 * and the end (rss_1s_kib, rss_5s_kib, rss_idle_kib), beside the live
 * data (a few KiB here). The check sums bytes read back from each buffer. */
#include <unistd.h>

#include "gcb.h"

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, resident = 0;
  if (f != NULL) {
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = 0;
    fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static long rss_at[3];

static uint64_t run(int idle_s) {
  enum { ROUNDS = 10 };
  const size_t size = (size_t)256 << 20;
  uint64_t check = 0;
  for (int r = 0; r < ROUNDS; r++) {
    unsigned char *buf = GCB_ALLOC_ATOMIC(size);
    for (size_t i = 0; i < size; i += 4096) buf[i] = (unsigned char)(i >> 12) + (unsigned char)r;
    for (size_t i = 0; i < size; i += 1 << 20) check += buf[i];
    GCB_FREE(buf);
  }
  /* Quiet: a few small allocations a second, as an idle service makes. */
  double t0 = gcb_now();
  for (int tick = 1; tick <= idle_s * 10; tick++) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    void *p = GCB_ALLOC(64);
    GCB_FREE(p);
    double t = gcb_now() - t0;
    if (rss_at[0] == 0 && t >= 1.0) rss_at[0] = rss_kib();
    if (rss_at[1] == 0 && t >= 5.0) rss_at[1] = rss_kib();
  }
  rss_at[2] = rss_kib();
  return check;
}

int main(int argc, char **argv) {
  int rc = gcb_main("seed", run, argc, argv, 10);
  printf("rss_1s_kib=%ld rss_5s_kib=%ld rss_idle_kib=%ld\n", rss_at[0], rss_at[1], rss_at[2]);
  return rc;
}
