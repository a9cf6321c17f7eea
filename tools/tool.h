/* Shared pieces of the neap tool (build/neap). The tool is an ordinary
 * program using libc's malloc; it reads other processes through /proc and
 * the stats files neap processes publish (src/statsfile.c has the format
 * and the security model). */
#ifndef NEAP_TOOL_H
#define NEAP_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "neap.h"

/* Parses a process id argument; prints "neap CMD: 'ARG' is not a process
 * id" and returns false when it is not one. */
bool tool_parse_pid(const char *cmd, const char *arg, pid_t *pid);

/* Whether process pid exists (0), or an errno value: ESRCH (no such
 * process), EACCES (exists, not ours to read). */
int tool_process_state(pid_t pid);

/* Whether pid has libneap mapped or publishes a neap stats file. */
bool tool_is_neap(pid_t pid);

/* Reads the stats that neap process pid publishes. Returns 0, or -1 with a
 * one-line reason (no trailing newline) in why: no such process, not a
 * neap process, publishes no stats yet, permission denied, stale file. */
int tool_read_stats(pid_t pid, neap_stats_t *s, char *why, size_t whylen);

/* Output sink for neap_write_fn printers: arg is a FILE *. */
void tool_write_file(void *arg, const char *buf, size_t len);

/* Bytes as a short human figure ("1.5 GiB", "312 KiB") into buf. */
const char *tool_human(char *buf, size_t n, unsigned long long bytes);

/* Subcommands: each takes argv from its own name on, returns the exit
 * status. */
int cmd_inspect(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
