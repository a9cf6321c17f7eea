#!/usr/bin/env python3
"""neap's collector benchmarks: binary-trees and GCBench under every way of
managing their memory, side by side (make bench-gc).

Each benchmark (bench/gc/*.c) is built once per mode by CMake
(build/bench/gc/NAME_MODE): `boehm` links Debian's libgc (Boehm GC 8.2.2,
defaults), `neap` uses neap's collector (linked with libneap.so), `malloc` frees
explicitly and runs under an allocator chosen with LD_PRELOAD (neap's
libneap.so, and glibc). Within each repetition the
variants run one after another, in an order that rotates from one
repetition to the next; the report gives medians of time, peak RSS (from
runstat's wait4, the process's own) and, for collectors, the number of
collections and their mean and longest pauses. A run counts only if it
exits 0 and prints the same check value as the others.

Outputs in --out (default build/bench/gc/): runs.csv and report.md;
--results DIR also copies them to DIR/DATE-gc/.
"""
import argparse
import csv
import datetime
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHES = ["binary_trees", "gcbench", "seed"]
SEED_IDLE_S = 10  # the seed scenario: its -d is the idle period, and it runs on one thread


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def variants(build):
    """(name, binary mode, LD_PRELOAD) of every variant that exists here."""
    out = []
    gcdir = os.path.join(build, "bench", "gc")
    if os.path.exists(os.path.join(gcdir, "binary_trees_boehm")):
        out.append(("boehm", "boehm", None))
    else:
        log("bench-gc: no Boehm build (apt-get install libgc-dev, then rebuild): left out")
    out.append(("neap-gc", "neap", None))
    # Boehm's default free-space divisor 3 grows the heap by about a third of
    # it between collections: GOGC=67 is the matched setting for peak RSS.
    out.append(("neap-gc-67", "neap", "NEAP_GC=67"))
    out.append(("neap-malloc", "malloc", os.path.join(build, "libneap.so")))
    out.append(("glibc-malloc", "malloc", None))
    return out


def run_once(runstat, binary, preload, args):
    """preload: a library to LD_PRELOAD, or NAME=VALUE to set in the environment."""
    env = []
    if preload and "=" in preload:
        env = [preload]
    elif preload:
        env = ["LD_PRELOAD=" + preload]
    cmd = [runstat, "--", "env"] + env + [binary] + args
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        log("bench-gc: %s failed (%d): %s" % (" ".join(cmd), p.returncode, p.stderr.strip()[-300:]))
        return None
    lines = p.stdout.strip().splitlines()
    kv = dict(f.split("=", 1) for line in lines[:-1] for f in line.split() if "=" in f)
    elapsed, user, sys_s, maxrss, minflt, status = lines[-1].split()
    kv.update(elapsed_s=elapsed, user_s=user, sys_s=sys_s, peak_rss_kib=maxrss, minflt=minflt)
    return kv


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def seed_report(sel, vs):
    """The seed scenario: RSS after the last 256 MiB buffer is dropped."""
    out = ["## seed: ten 256 MiB buffers dropped, then %d s quiet" % SEED_IDLE_S, "",
           "| variant | peak RSS MiB | RSS 1 s after MiB | RSS 5 s after MiB | RSS at the end MiB | collections |",
           "|---|--:|--:|--:|--:|--:|"]
    for name, _, _ in vs:
        rs = [r for r in sel if r["variant"] == name]
        if not rs:
            continue
        m = lambda k: median([int(r[k]) / 1024 for r in rs])
        gcs = median([int(r["gcs"]) for r in rs])
        out.append("| %s | %.0f | %.0f | %.0f | %.0f | %s |" % (
            name, m("peak_rss_kib"), m("rss_1s_kib"), m("rss_5s_kib"), m("rss_idle_kib"), "%d" % gcs if gcs else "-"))
    return out + [""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (each runs the whole benchmark)")
    ap.add_argument("--only", help="comma-separated benchmarks: binary_trees, gcbench, seed")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--results", default=None)
    args = ap.parse_args()
    out = args.out or os.path.join(args.build, "bench", "gc")
    os.makedirs(out, exist_ok=True)
    runstat = os.path.join(args.build, "bench", "runstat")
    benches = args.only.split(",") if args.only else BENCHES
    threads = [int(t) for t in args.threads.split(",")]
    vs = variants(args.build)
    rows = []
    for rep in range(args.reps):
        for bench in benches:
            for t in ([1] if bench == "seed" else threads):
                order = vs[rep % len(vs):] + vs[:rep % len(vs)]
                for name, mode, preload in order:
                    binary = os.path.join(args.build, "bench", "gc", "%s_%s" % (bench, mode))
                    depth = SEED_IDLE_S if bench == "seed" else args.depth
                    kv = run_once(runstat, binary, preload, ["-t", str(t), "-d", str(depth)])
                    if kv is None:
                        continue
                    kv.update(variant=name, rep=rep + 1)
                    rows.append(kv)
                    log("rep %d/%d %-13s t=%d %-13s %7.3f s %8.1f MiB  gcs %-5s pause mean %s max %s ms" % (
                        rep + 1, args.reps, bench, t, name, float(kv["work_s"]), int(kv["peak_rss_kib"]) / 1024,
                        kv["gcs"], kv["pause_mean_ms"], kv["pause_max_ms"]))
    fields = ["variant", "bench", "threads", "depth", "rep", "work_s", "elapsed_s", "user_s", "sys_s",
              "peak_rss_kib", "minflt", "gcs", "pause_mean_ms", "pause_max_ms", "pause_total_ms", "rss_1s_kib",
              "rss_5s_kib", "rss_idle_kib", "check"]
    with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    report = ["# Collector benchmarks: %s" % datetime.date.today().isoformat(), "",
              "Depth %d, %d repetitions, medians; ratios against Boehm in the same run. A run counts only "
              "with the same check value as the others." % (args.depth, args.reps), ""]
    for bench in benches:
        if bench == "seed":
            report += seed_report([r for r in rows if r["bench"] == "seed"], vs)
            continue
        for t in threads:
            sel = [r for r in rows if r["bench"] == bench.replace("_", "-") and int(r["threads"]) == t]
            checks = {r["check"] for r in sel}
            if len(checks) > 1:
                report.append("**%s t=%d: check values differ (%s): a variant computed something else.**" % (
                    bench, t, ", ".join(sorted(checks))))
            report += ["## %s, %d thread%s" % (bench, t, "s" if t > 1 else ""), "",
                       "| variant | time s | vs Boehm | peak RSS MiB | vs Boehm | collections | pause mean ms | pause max ms |",
                       "|---|--:|--:|--:|--:|--:|--:|--:|"]
            med = {}
            for name, _, _ in vs:
                rs = [r for r in sel if r["variant"] == name]
                if not rs:
                    continue
                med[name] = (median([float(r["work_s"]) for r in rs]), median([int(r["peak_rss_kib"]) / 1024 for r in rs]),
                             median([int(r["gcs"]) for r in rs]), median([float(r["pause_mean_ms"]) for r in rs]),
                             median([float(r["pause_max_ms"]) for r in rs]))
            base = med.get("boehm")
            for name, (tm, rss, gcs, pmean, pmax) in med.items():
                rt = "%.2f" % (tm / base[0]) if base else "-"
                rr = "%.2f" % (rss / base[1]) if base else "-"
                report.append("| %s | %.2f | %s | %.0f | %s | %s | %s | %s |" % (
                    name, tm, rt, rss, rr, "%d" % gcs if gcs else "-", "%.1f" % pmean if gcs else "-",
                    "%.1f" % pmax if gcs else "-"))
            report.append("")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(report) + "\n")
    print("\n".join(report))
    if args.results:
        dest = os.path.join(args.results, datetime.date.today().isoformat() + "-gc")
        os.makedirs(dest, exist_ok=True)
        for n in ("runs.csv", "report.md"):
            shutil.copy(os.path.join(out, n), dest)
        log("bench-gc: results in %s" % dest)


if __name__ == "__main__":
    main()
