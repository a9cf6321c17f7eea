/* fork_exit: children that exit normally (running exit handlers) while the
 * parent's scavenger thread publishes the stats file. A child inherits
 * memory, not threads: a lock the scavenger held at the fork would be held
 * forever in the child, and neap's exit handler takes the stats file's
 * flag. 3,000 forks with the parent allocating, each child given 0.6 s to
 * exit (one in 3,000 hung before the fork handler took the flag). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(void) {
  static void *keep[4096];
  for (int i = 0; i < 4096; i++) { /* 32 MiB: the scavenger starts and publishes */
    keep[i] = malloc(8192);
    memset(keep[i], 1, 8192);
  }
  struct timespec nap = {0, 300000};
  int hung = 0, forks = 3000;
  for (int i = 0; i < forks; i++) {
    pid_t p = fork();
    if (p < 0) {
      perror("fork");
      return 1;
    }
    if (p == 0) {
      free(malloc(100));
      exit(0); /* exit handlers run */
    }
    int done = 0;
    for (int w = 0; w < 2000 && !done; w++) {
      int st;
      if (waitpid(p, &st, WNOHANG) == p) done = 1;
      else nanosleep(&nap, NULL);
    }
    if (!done) {
      hung++;
      kill(p, SIGKILL);
      waitpid(p, NULL, 0);
    }
    free(malloc(1 << 20));
  }
  for (int i = 0; i < 4096; i++) free(keep[i]);
  printf("%d forks, %d children hung at exit\n", forks, hung);
  printf("%d passed, %d failed\n", hung == 0, hung != 0);
  return hung != 0;
}
