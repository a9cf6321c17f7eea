/* Statistics: neap_stats_read, one consistent snapshot of the heap.
 *
 * What it owns: nothing; it gathers. The heap's page counts come in one
 * piece under the heap lock (so heap_sys = heap_inuse + heap_idle and
 * heap_idle >= heap_released hold exactly), object counts from the caches
 * (cache.c: neap__cache_totals, whose frees are mallocs - live by
 * construction), the scavenger's from its counters. Nothing here stops
 * other threads: each source is read under its own lock, briefly.
 */
#include <errno.h>
#include <string.h>

#include "heap.h"
#include "memlimit.h"
#include "neap.h"

int neap_stats_read(neap_stats_t *out, size_t size) {
  if (out == NULL || size < sizeof out->version) return EINVAL;
  neap_stats_t s;
  memset(&s, 0, sizeof s);
  s.version = NEAP_STATS_VERSION;

  neap_alloc_totals t;
  neap__cache_totals(&t);
  s.heap_alloc = t.bytes_live;
  s.total_alloc = t.bytes_alloc;
  s.mallocs = t.nmalloc;
  s.frees = t.nfree;
  s.heap_objects = t.nlive;

  neap_heap_stats hs;
  neap__heap_stats(&hs);
  neap_meta_stats ms;
  neap__meta_stats(&ms);
  s.heap_sys = hs.pages_grown << NEAP_PAGE_SHIFT;
  s.heap_inuse = hs.pages_inuse << NEAP_PAGE_SHIFT;
  s.heap_idle = s.heap_sys - s.heap_inuse;
  s.heap_released = hs.pages_scavenged << NEAP_PAGE_SHIFT;
  s.heap_released_resident = hs.pages_lazy << NEAP_PAGE_SHIFT;
  s.metadata_sys = ms.mapped + hs.pa_mapped;
  s.sys = s.heap_sys + s.metadata_sys;
  s.held = s.sys - s.heap_released;

  s.memlimit = neap__memlimit_bytes();
  s.memlimit_source = (uint64_t)neap__memlimit_source();
  s.memlimit_hard = s.memlimit != 0 && neap__memlimit_hard();

  neap_scav_totals st;
  neap__scav_totals(&st);
  s.scav_bg_bytes = st.bg_bytes;
  s.scav_eager_bytes = st.eager_bytes;
  s.scav_forced_bytes = st.forced_bytes;
  s.scav_cycles = st.cycles;
  s.scav_cpu_ns = st.cpu_ns;

  memcpy(out, &s, size < sizeof s ? size : sizeof s);
  return 0;
}
