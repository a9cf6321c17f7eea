/* neap serve --listen ADDR:PORT PID...: a small HTTP endpoint with /metrics
 * in the Prometheus text format for the given neap processes, so that an
 * existing Prometheus can scrape a fleet without a client library in the
 * programs.
 *
 * Single-threaded and deliberately small: one connection at a time, a
 * request read with a 5 s timeout, GET only, Connection: close. Scrapes
 * come every few seconds; a slow or hostile client can hold the endpoint
 * for at most the timeout. It listens on the loopback address unless told
 * otherwise, because the figures describe the machine's processes.
 *
 * Each scrape reads every process's stats file afresh (common.c). A
 * process that cannot be read (ended, not a neap process yet) shows as
 * neap_up{pid="N"} 0 with no other samples, the Prometheus convention
 * for a target that is down.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "statsfmt.h"
#include "tool.h"

static const char usage[] =
    "usage: neap serve [--listen [HOST:]PORT] PID...\n"
    "\n"
    "Serves http://HOST:PORT/metrics: the live statistics of each neap\n"
    "process PID in the Prometheus text format, labelled pid=\"PID\", plus\n"
    "neap_up{pid=\"PID\"} (1 if its stats could be read). One request at a\n"
    "time; runs until interrupted.\n"
    "\n"
    "options:\n"
    "  --listen [HOST:]PORT   where to listen (default 127.0.0.1:9474; the\n"
    "                         host defaults to 127.0.0.1, loopback only)\n"
    "  -h, --help             this help\n"
    "\n"
    "exit status: 1 if it cannot listen, 2 for a usage error.\n";

/* A growing buffer the printers write into. */
typedef struct body {
  char *buf;
  size_t n, cap;
} body;

static void body_write(void *arg, const char *buf, size_t len) {
  body *b = arg;
  if (b->n + len > b->cap) {
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->n + len) cap *= 2;
    char *nb = realloc(b->buf, cap);
    if (nb == NULL) return; /* a short body; the next scrape tries again */
    b->buf = nb, b->cap = cap;
  }
  memcpy(b->buf + b->n, buf, len);
  b->n += len;
}

static void body_printf(body *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void body_printf(body *b, const char *fmt, ...) {
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n > 0) body_write(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void metrics(body *b, const pid_t *pids, int n) {
  neap_stats_t *snaps = calloc((size_t)n, sizeof *snaps);
  const neap_stats_t **ptrs = calloc((size_t)n, sizeof *ptrs);
  char(*labels)[32] = calloc((size_t)n, sizeof *labels);
  const char **lp = calloc((size_t)n, sizeof *lp);
  if (snaps == NULL || ptrs == NULL || labels == NULL || lp == NULL) goto out;
  body_printf(b, "# HELP neap_up 1 if the process's neap statistics could be read\n# TYPE neap_up gauge\n");
  int ok = 0;
  for (int i = 0; i < n; i++) {
    char why[512];
    bool up = tool_read_stats(pids[i], &snaps[ok], why, sizeof why) == 0;
    body_printf(b, "neap_up{pid=\"%d\"} %d\n", (int)pids[i], up);
    if (!up) continue;
    snprintf(labels[ok], sizeof labels[ok], "pid=\"%d\"", (int)pids[i]);
    ptrs[ok] = &snaps[ok];
    lp[ok] = labels[ok];
    ok++;
  }
  if (ok > 0) neap__stats_emit(ptrs, lp, (size_t)ok, NEAP_STATS_PROMETHEUS, body_write, b);
out:
  free(snaps), free(ptrs), free(labels), free(lp);
}

static void respond(int fd, const char *status, const char *type, const char *data, size_t len) {
  char head[256];
  int h = snprintf(head, sizeof head,
                   "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
                   type, len);
  if (send(fd, head, (size_t)h, MSG_NOSIGNAL) < 0) return;
  while (len > 0) {
    ssize_t w = send(fd, data, len, MSG_NOSIGNAL);
    if (w <= 0) return;
    data += w, len -= (size_t)w;
  }
}

static void serve_one(int fd, const pid_t *pids, int n) {
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  char req[4096];
  size_t got = 0;
  while (got < sizeof req - 1) {
    ssize_t r = recv(fd, req + got, sizeof req - 1 - got, 0);
    if (r <= 0) break;
    got += (size_t)r;
    req[got] = '\0';
    if (strstr(req, "\r\n\r\n") != NULL || strstr(req, "\n\n") != NULL) break;
  }
  req[got] = '\0';
  char method[16] = "", target[1024] = "";
  if (sscanf(req, "%15s %1023s", method, target) != 2) {
    static const char m[] = "bad request\n";
    respond(fd, "400 Bad Request", "text/plain", m, sizeof m - 1);
    return;
  }
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    static const char m[] = "only GET\n";
    respond(fd, "405 Method Not Allowed", "text/plain", m, sizeof m - 1);
    return;
  }
  char *q = strchr(target, '?');
  if (q != NULL) *q = '\0';
  if (strcmp(target, "/metrics") == 0) {
    body b = {0};
    metrics(&b, pids, n);
    respond(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", b.buf ? b.buf : "",
            strcmp(method, "HEAD") == 0 ? 0 : b.n);
    free(b.buf);
  } else if (strcmp(target, "/") == 0) {
    static const char m[] = "neap serve: the metrics are at /metrics\n";
    respond(fd, "200 OK", "text/plain", m, sizeof m - 1);
  } else {
    static const char m[] = "not found: try /metrics\n";
    respond(fd, "404 Not Found", "text/plain", m, sizeof m - 1);
  }
}

/* "PORT", ":PORT", "HOST:PORT" or "[V6]:PORT" into host and port. */
static bool split_listen(const char *arg, char *host, size_t hn, char *port, size_t pn) {
  const char *colon = strrchr(arg, ':');
  if (colon == NULL) {
    snprintf(host, hn, "127.0.0.1");
    snprintf(port, pn, "%s", arg);
  } else {
    size_t len = (size_t)(colon - arg);
    if (len == 0) snprintf(host, hn, "127.0.0.1");
    else if (arg[0] == '[' && len >= 2 && arg[len - 1] == ']') snprintf(host, hn, "%.*s", (int)(len - 2), arg + 1);
    else snprintf(host, hn, "%.*s", (int)len, arg);
    snprintf(port, pn, "%s", colon + 1);
  }
  char *end;
  long p = strtol(port, &end, 10);
  return *port != '\0' && *end == '\0' && p >= 0 && p <= 65535;
}

int cmd_serve(int argc, char **argv) {
  const char *listen_at = "127.0.0.1:9474";
  pid_t *pids = calloc((size_t)argc, sizeof *pids);
  int n = 0;
  if (pids == NULL) return 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage, stdout);
      free(pids);
      return 0;
    } else if (strcmp(a, "--listen") == 0 && i + 1 < argc) {
      listen_at = argv[++i];
    } else if (strncmp(a, "--listen=", 9) == 0) {
      listen_at = a + 9;
    } else if (a[0] == '-') {
      fprintf(stderr, "neap serve: unknown option '%s' (see neap serve --help)\n", a);
      free(pids);
      return 2;
    } else if (!tool_parse_pid("serve", a, &pids[n++])) {
      free(pids);
      return 2;
    }
  }
  char host[256], port[16];
  if (n == 0 || !split_listen(listen_at, host, sizeof host, port, sizeof port)) {
    fprintf(stderr, n == 0 ? "neap serve: no process id given (see neap serve --help)\n"
                           : "neap serve: --listen wants [HOST:]PORT\n");
    free(pids);
    return 2;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
  int gai = getaddrinfo(host, port, &hints, &ai);
  if (gai != 0) {
    fprintf(stderr, "neap serve: cannot listen on %s: %s\n", listen_at, gai_strerror(gai));
    free(pids);
    return 1;
  }
  int ls = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  int one = 1;
  if (ls >= 0) setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ls < 0 || bind(ls, ai->ai_addr, ai->ai_addrlen) != 0 || listen(ls, 16) != 0) {
    fprintf(stderr, "neap serve: cannot listen on %s: %s\n", listen_at, strerror(errno));
    freeaddrinfo(ai);
    free(pids);
    return 1;
  }
  freeaddrinfo(ai);
  fprintf(stderr, "neap serve: http://%s:%s/metrics for %d process%s\n", host, port, n, n == 1 ? "" : "es");
  signal(SIGPIPE, SIG_IGN);
  for (;;) {
    int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
      fprintf(stderr, "neap serve: accept: %s\n", strerror(errno));
      free(pids);
      return 1;
    }
    serve_one(fd, pids, n);
    close(fd);
  }
}
