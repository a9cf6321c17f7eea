#!/usr/bin/env python3
"""neap's benchmark suite: every workload under every allocator, side by side.

    python3 bench/suite.py [--reps N] [--threads 1,2,4] [--only mixed,larson]
                           [--alloc glibc,mimalloc,neap] [--quick] [--out DIR]

Each workload (bench/wl/wl_*.c, plus sqlite3 running a fixed script) runs
under glibc, jemalloc, tcmalloc, mimalloc and neap through LD_PRELOAD. Within
each repetition the allocators run one after another in an order that
rotates from one repetition to the next, so machine drift hits all of them
alike; the report takes medians. A run counts only if it exits 0 and its
check value (a checksum of what the workload computed) is the same as
glibc's: a broken allocator cannot win.

Per run it records elapsed, user and sys time and minor faults (wait4), the
peak RSS (the kernel's high-water mark), the workload's own timed part
(work_s) and memory figures, and, sampled every 100 ms from outside, the RSS
over time. Outputs in --out (default build/bench/suite):
  runs.csv        one row per run
  rss.csv         the RSS samples of the memory-return workloads
  report.md       per workload: time and peak RSS, absolute and as a ratio
                  to mimalloc; geometric means; the targets, met or not;
                  instruction counts (callgrind) of the single-threaded
                  workloads
  time.svg, rss-peak.svg, rss-frag.svg   plots (our own SVG, no gnuplot)

Standard library only: it runs on a fresh Debian 12 with python3.
"""

import argparse
import csv
import datetime
import hashlib
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIBDIR = "/usr/lib/x86_64-linux-gnu"

# name -> (environment variable that overrides the path, default path, Debian package)
ALLOCATORS = [
    ("glibc", None, None, None),
    ("jemalloc", "JEMALLOC_SO", LIBDIR + "/libjemalloc.so.2", "libjemalloc2"),
    ("tcmalloc", "TCMALLOC_SO", LIBDIR + "/libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
    ("mimalloc", "MIMALLOC_SO", LIBDIR + "/libmimalloc.so.2", "libmimalloc2.0"),
    ("neap", "NEAP_SO", None, None),  # build/libneap.so, set in main()
]
BASELINE = "mimalloc"
# Variants run only when named in --alloc: an allocator's library with
# options set. neap-noscav measures what the background scavenger costs.
VARIANTS = {"neap-noscav": ("neap", ["NEAPDEBUG=scavenger=0"])}

# name, program, threaded, kind, what it models. kind "time": the figure
# is work_s; "memory": the memory-return workloads (they idle, and report
# what they hold afterwards); both kinds count in the time geomean.
WORKLOADS = [
    ("mixed", "wl_mixed", False, "time", "single thread, sizes 8..1024, random lifetimes"),
    ("larson", "wl_larson", True, "time", "server simulation, blocks handed between threads"),
    ("xmalloc", "wl_xmalloc", True, "time", "producers allocate, consumers free"),
    ("remote", "wl_remote", True, "time", "random cross-thread frees, 8 B .. 16 KiB"),
    ("loops", "wl_loops", False, "time", "tight loops: malloc/free pairs, batches, a Pareto mix"),
    ("cache-thrash", "wl_cache_thrash", True, "time", "active false sharing (Hoard)"),
    ("cache-scratch", "wl_cache_scratch", True, "time", "passive false sharing (Hoard)"),
    ("bignum", "wl_bignum", False, "time", "cfrac-like: big numbers as linked lists of digits"),
    ("realloc", "wl_realloc", False, "time", "realloc growth 1 KiB .. 64 MiB"),
    ("bigblocks", "wl_bigblocks", False, "time", "256 KiB .. 16 MiB blocks, touched"),
    ("peak", "wl_peak", False, "memory", "256 MiB allocated and freed 10 times, then idle"),
    ("frag", "wl_frag", False, "memory", "1 GiB of 64 B and 1 KiB objects, 90% freed, then idle"),
    ("churn", "wl_churn", True, "time", "threads created and ended constantly"),
    ("sqlite", None, False, "time", "sqlite3 running a fixed script (real program)"),
]
SINGLE_THREADED_FOR_CALLGRIND = ["mixed", "loops", "bignum", "realloc", "bigblocks"]

FIELDS = ["allocator", "workload", "threads", "rep", "ok", "elapsed_s", "work_s", "user_s", "sys_s",
          "peak_rss_kib", "rss_2s_kib", "rss_idle_kib", "live_kib", "minflt", "check"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_kv(line):
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


def rss_kib(pid):
    try:
        with open("/proc/%d/statm" % pid) as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGESIZE") // 1024)
    except (OSError, IndexError, ValueError):
        return None


def child_of(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except (OSError, ValueError):
        return None


def run_once(runstat, cmd, preload, stdin_path=None, sample=False):
    """Runs cmd under runstat (a small C launcher: the python runner's own RSS
    would otherwise count in the child's peak, since the kernel keeps the
    high-water mark across exec). LD_PRELOAD reaches only the workload.
    Returns (ok_status, stdout, stderr, stats, samples); stats has elapsed,
    user, sys, maxrss_kib, minflt."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    statf = tempfile.NamedTemporaryFile(prefix="neap-suite-", suffix=".stat", delete=False)
    statf.close()
    extra = []
    if isinstance(preload, tuple):  # (path, ["NAME=value", ...]): a variant
        preload, extra = preload
    full = [runstat, "-o", statf.name, "--", "env"] + (["LD_PRELOAD=" + preload] if preload else []) + extra + cmd
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    errf = tempfile.TemporaryFile()  # a file, not a pipe: a chatty program cannot block on it
    outf = tempfile.TemporaryFile()
    t0 = time.monotonic()
    p = subprocess.Popen(full, env=env, stdin=stdin, stdout=outf, stderr=errf)
    samples = []
    while p.poll() is None:
        if sample:
            kid = child_of(p.pid)
            r = rss_kib(kid) if kid else None
            if r is not None:
                samples.append((time.monotonic() - t0, r))
            time.sleep(0.1)
        else:
            time.sleep(0.01)
    if stdin_path:
        stdin.close()
    outf.seek(0)
    errf.seek(0)
    out, err = outf.read(), errf.read()
    outf.close()
    errf.close()
    try:
        with open(statf.name) as f:
            v = f.read().split()
        stats = {"elapsed": float(v[0]), "user": float(v[1]), "sys": float(v[2]),
                 "maxrss_kib": int(v[3]), "minflt": int(v[4])}
    except (OSError, IndexError, ValueError):
        stats = {"elapsed": time.monotonic() - t0, "user": 0.0, "sys": 0.0, "maxrss_kib": 0, "minflt": 0}
    os.unlink(statf.name)
    return p.returncode, out, err, stats, samples


def check_workloads(build, only):
    """The workload programs are built by CMake (make); check they are there."""
    missing = [w[1] for w in WORKLOADS
               if w[0] in only and w[1] and not os.access(os.path.join(build, "bench", w[1]), os.X_OK)]
    if missing:
        sys.exit("suite: missing %s in %s/bench: run make first" % (", ".join(missing), build))


SQLITE_ROWS = 300000  # at scale 1: the override tests' default (workloads.sh)


def sqlite_script(workdir, scale):
    """The sqlite workload's SQL, made by the override tests' generator,
    with its row counts scaled like every other workload's work."""
    d = os.path.join(workdir, "sqlite")
    os.makedirs(d, exist_ok=True)
    script = os.path.join(d, "work.sql")
    if not os.path.exists(script):
        env = dict(os.environ, NEAP_SQLITE_ROWS=str(max(1000, round(SQLITE_ROWS * scale))))
        subprocess.run(["bash", "-c", '. "$1" && wl_sqlite_setup "$2"', "x",
                        os.path.join(ROOT, "tests", "override", "workloads.sh"), d], check=True, env=env)
    return script


def allocator_paths(names, build, install):
    found = []
    for name, var, default, pkg in ALLOCATORS:
        if name not in names:
            continue
        path = None
        if name == "neap":
            path = os.environ.get("NEAP_SO", os.path.join(build, "libneap.so"))
        elif var:
            path = os.environ.get(var, default)
        if path and not os.path.exists(path):
            if install and pkg and os.geteuid() == 0:
                log("suite: installing %s" % pkg)
                subprocess.run(["apt-get", "install", "-y", "-qq", pkg], check=False,
                               env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
            if not os.path.exists(path):
                log("suite: %s not found at %s (apt-get install %s): left out" % (name, path, pkg))
                continue
        found.append((name, path))
    for name in names:
        if name in VARIANTS:
            base, extra = VARIANTS[name]
            for n, path in list(found):
                if n == base:
                    found.append((name, (path, extra)))
    return found


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def fmt(x, digits=2):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return "%.*f" % (digits, x)


# ---------------------------------------------------------------- plots

PALETTE = {"glibc": "#7f7f7f", "jemalloc": "#1f77b4", "tcmalloc": "#ff7f0e", "mimalloc": "#2ca02c",
           "neap": "#d62728"}


def svg_lines(path, title, series, xlabel, ylabel):
    """series: {name: [(x, y), ...]}"""
    W, H, L, R, T, B = 720, 400, 70, 130, 40, 50
    xs = [x for s in series.values() for x, _ in s] or [0, 1]
    ys = [y for s in series.values() for _, y in s] or [0, 1]
    xmax, ymax = max(xs) or 1, (max(ys) or 1) * 1.05
    sx = lambda x: L + (W - L - R) * x / xmax
    sy = lambda y: H - B - (H - T - B) * y / ymax
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
         'font-size="12">' % (W, H), '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="15">%s</text>' % (L, title)]
    for i in range(6):
        y = ymax * i / 5
        o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (L, W - R, sy(y), sy(y)))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%.0f</text>' % (L - 6, sy(y) + 4, y))
    for i in range(6):
        x = xmax * i / 5
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%.1f</text>' % (sx(x), H - B + 18, x))
    o.append('<text x="%d" y="%d" text-anchor="middle">%s</text>' % ((L + W - R) // 2, H - 10, xlabel))
    o.append('<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle">%s</text>'
             % ((T + H - B) // 2, (T + H - B) // 2, ylabel))
    for k, (name, pts) in enumerate(series.items()):
        color = PALETTE.get(name, "#000")
        if pts:
            o.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                     % (color, " ".join("%.1f,%.1f" % (sx(x), sy(y)) for x, y in pts)))
        o.append('<rect x="%d" y="%d" width="14" height="4" fill="%s"/>' % (W - R + 12, T + 18 * k + 6, color))
        o.append('<text x="%d" y="%d">%s</text>' % (W - R + 32, T + 18 * k + 12, name))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def svg_bars(path, title, groups, names, xlabel):
    """groups: [(label, {allocator: ratio})]; horizontal grouped bars, a line at 1."""
    bar, gap, L, R, T = 9, 10, 150, 120, 40
    H = T + len(groups) * (bar * len(names) + gap) + 40
    W = 760
    vmax = max([v for _, d in groups for v in d.values() if v] + [1.0]) * 1.05
    sx = lambda v: L + (W - L - R) * v / vmax
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
         'font-size="11">' % (W, H), '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="15">%s</text>' % (L, title)]
    y = T
    for label, d in groups:
        o.append('<text x="%d" y="%d" text-anchor="end">%s</text>'
                 % (L - 6, y + bar * len(names) // 2 + 4, label))
        for name in names:
            v = d.get(name)
            if v:
                o.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>'
                         % (L, y, sx(v) - L, bar - 1, PALETTE.get(name, "#000")))
            y += bar
        y += gap
    o.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="black" stroke-dasharray="4 3"/>'
             % (sx(1), sx(1), T - 6, y))
    for i in range(0, int(vmax * 4) + 1):
        v = i / 4
        if v <= vmax:
            o.append('<text x="%.1f" y="%d" text-anchor="middle">%.2g</text>' % (sx(v), y + 14, v))
    o.append('<text x="%d" y="%d" text-anchor="middle">%s</text>' % ((L + W - R) // 2, y + 30, xlabel))
    for k, name in enumerate(names):
        o.append('<rect x="%d" y="%d" width="14" height="8" fill="%s"/>'
                 % (W - R + 12, T + 16 * k, PALETTE.get(name, "#000")))
        o.append('<text x="%d" y="%d">%s</text>' % (W - R + 32, T + 16 * k + 8, name))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


# ---------------------------------------------------------------- callgrind

def callgrind_counts(allocs, build, scale):
    """Instructions executed by each single-threaded workload under each
    allocator (whole program: the workload's own work is the same for all)."""
    if not shutil.which("valgrind"):
        log("suite: valgrind not found: no instruction counts")
        return {}
    counts = {}
    for w in SINGLE_THREADED_FOR_CALLGRIND:
        prog = os.path.join(build, "bench", dict((x[0], x[1]) for x in WORKLOADS)[w])
        for name, path in allocs:
            env = dict(os.environ)
            env.pop("LD_PRELOAD", None)
            cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--trace-children=yes"]
            extra = []
            if isinstance(path, tuple):
                path, extra = path
            cmd += ["env", "LD_PRELOAD=" + path] + extra if path else []
            cmd += [prog, "-s", str(scale), "-i", "0"]
            r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            total = [int(m.replace(b",", b"")) for m in re.findall(rb"Collected : ([\d,]+)", r.stderr)]
            counts[(w, name)] = total[-1] if r.returncode == 0 and total else None
            log("callgrind %-10s %-9s %s" % (w, name, counts[(w, name)]))
    return counts


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default 3; medians)")
    ap.add_argument("--threads", default=None,
                    help="thread counts for threaded workloads (default 1,2 and 4,8,16 up to the cores)")
    ap.add_argument("--only", default=None, help="comma-separated workloads")
    ap.add_argument("--alloc", default=None, help="comma-separated allocators")
    ap.add_argument("--scale", type=float, default=1.0, help="work multiplier (default 1)")
    ap.add_argument("--idle", type=float, default=10.0, help="idle seconds of the memory workloads")
    ap.add_argument("--quick", action="store_true",
                    help="scale 0.1, idle 2 s, 3 reps (the memory workloads and sqlite once), no callgrind: "
                    "about 1.5 minutes on 2 cores")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--callgrind-scale", type=float, default=0.05)
    ap.add_argument("--install", action="store_true", help="apt-get install missing reference allocators")
    ap.add_argument("--report-only", action="store_true",
                    help="no runs: remake the report (and instruction counts) from --out's runs.csv and rss.csv")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--results", default=None,
                    help="also copy report.md, runs.csv and the plots into RESULTS/DATE-suite/")
    args = ap.parse_args()
    if args.quick:
        args.scale, args.idle, args.no_callgrind = 0.1 * args.scale, 2.0, True
    ncpu = os.cpu_count() or 1
    threads = [int(t) for t in args.threads.split(",")] if args.threads else \
        [t for t in (1, 2, 4, 8, 16) if t <= max(2, ncpu)]
    names = args.alloc.split(",") if args.alloc else [a[0] for a in ALLOCATORS]
    only = args.only.split(",") if args.only else [w[0] for w in WORKLOADS]
    unknown = set(only) - {w[0] for w in WORKLOADS}
    if unknown:
        sys.exit("suite: unknown workloads: " + ", ".join(sorted(unknown)))
    out = args.out or os.path.join(args.build, "bench", "suite")
    os.makedirs(out, exist_ok=True)
    check_workloads(args.build, only)
    runstat = os.path.join(args.build, "bench", "runstat")
    if not os.access(runstat, os.X_OK):
        sys.exit("suite: missing %s: run make first" % runstat)
    allocs = allocator_paths(names, args.build, args.install)
    if not any(a[0] == "glibc" for a in allocs):
        sys.exit("suite: glibc is the reference for the check values: keep it in --alloc")
    workdir = tempfile.mkdtemp(prefix="neap-suite-")

    # The run list: (workload, threads).
    cases = []
    for name, prog, threaded, kind, _ in WORKLOADS:
        if name in only:
            for t in (threads if threaded else [1]):
                cases.append((name, prog, t, kind))

    rows, traces = [], []
    reference = {}
    started = time.monotonic()
    if args.report_only:
        with open(os.path.join(out, "runs.csv")) as f:
            rows = [dict(r, ok=int(r["ok"]), threads=int(r["threads"]), rep=int(r["rep"])) for r in csv.DictReader(f)]
        with open(os.path.join(out, "rss.csv")) as f:
            traces = [(r["allocator"], r["workload"], r["rep"], r["t_s"], int(r["rss_kib"])) for r in csv.DictReader(f)]
        args.reps = max(r["rep"] for r in rows)
        present = {(r["workload"], r["threads"]) for r in rows}
        cases = [c for c in cases if (c[0], c[2]) in present]
    for rep in range(1, 0 if args.report_only else args.reps + 1):
        for name, prog, t, kind in cases:
            if args.quick and rep > 1 and (kind == "memory" or prog is None):
                continue  # quick: the idle workloads and the real program once
            order = allocs[(rep - 1) % len(allocs):] + allocs[:(rep - 1) % len(allocs)]
            for aname, path in order:
                stdin_path = None
                if prog is None:  # sqlite
                    cmd, stdin_path = ["sqlite3"], sqlite_script(workdir, args.scale)
                else:
                    cmd = [os.path.join(args.build, "bench", prog), "-t", str(t), "-s", str(args.scale),
                           "-i", str(args.idle)]
                status, outb, errb, st, samples = run_once(runstat, cmd, path, stdin_path,
                                                           sample=(kind == "memory"))
                ok = status == 0
                if prog is None:
                    kv = {"check": hashlib.sha256(outb).hexdigest()[:16]}
                else:
                    lines = [l for l in outb.decode(errors="replace").splitlines() if l.startswith("workload=")]
                    kv = parse_kv(lines[-1]) if lines else {}
                    ok = ok and "check" in kv
                key = (name, t)
                if ok and aname == "glibc":
                    reference.setdefault(key, kv.get("check"))
                if ok and key in reference and kv.get("check") != reference[key]:
                    log("suite: %s %s t=%d: check %s differs from glibc's %s" %
                        (aname, name, t, kv.get("check"), reference[key]))
                    ok = False
                if not ok:
                    log("suite: %s %s t=%d failed (status %d): %s" %
                        (aname, name, t, status, errb.decode(errors="replace").strip()[-300:]))
                row = {
                    "allocator": aname, "workload": name, "threads": t, "rep": rep, "ok": int(ok),
                    "elapsed_s": "%.4f" % st["elapsed"],
                    "work_s": kv.get("work_s", "%.4f" % st["elapsed"]),
                    "user_s": "%.4f" % st["user"], "sys_s": "%.4f" % st["sys"],
                    "peak_rss_kib": st["maxrss_kib"], "rss_2s_kib": kv.get("rss_2s_kib", ""),
                    "rss_idle_kib": kv.get("rss_idle_kib", ""), "live_kib": kv.get("live_kib", ""),
                    "minflt": st["minflt"], "check": kv.get("check", ""),
                }
                rows.append(row)
                if samples and rep == 1:
                    traces += [(aname, name, rep, "%.2f" % s, r) for s, r in samples]
                log("rep %d/%d %-13s t=%-2d %-9s %8.3f s %9.1f MiB%s" %
                    (rep, args.reps, name, t, aname, float(row["work_s"]), st["maxrss_kib"] / 1024,
                     "" if ok else "  FAILED"))
    wall = time.monotonic() - started
    if args.report_only:
        wall = sum(float(r["elapsed_s"]) for r in rows)

    with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(out, "rss.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["allocator", "workload", "rep", "t_s", "rss_kib"])
        w.writerows(traces)

    counts = {} if args.no_callgrind else callgrind_counts(allocs, args.build, args.callgrind_scale)
    report(out, rows, traces, counts, allocs, cases, args, threads, wall)
    shutil.rmtree(workdir, ignore_errors=True)
    if args.results:
        # A new directory each run: a second run on the same day must not
        # overwrite a report that may be committed already.
        base = os.path.join(args.results, "%s-suite" % datetime.date.today().isoformat())
        dest, n = base, 1
        while os.path.exists(dest):
            n += 1
            dest = "%s-%d" % (base, n)
        os.makedirs(dest)
        for fn in os.listdir(out):
            if fn.endswith(".md") or fn.endswith(".svg") or fn.endswith(".csv"):
                shutil.copy(os.path.join(out, fn), dest)
        log("suite: results copied to %s" % dest)
    print(open(os.path.join(out, "report.md")).read())


def med(rows, field):
    vals = [float(r[field]) for r in rows if r["ok"] and r[field] not in ("", None)]
    return statistics.median(vals) if vals else None


def report(out, rows, traces, counts, allocs, cases, args, threads, wall):
    names = [a[0] for a in allocs]
    base = BASELINE if BASELINE in names else names[0]
    desc = {w[0]: w[4] for w in WORKLOADS}
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    L = ["# neap benchmark suite", "", "neap at commit %s." % commit, "",
         "%s UTC; %s, %d CPUs; %s. %d repetitions (allocator order rotated each repetition), medians; "
         "scale %g, idle %g s; the suite took %.0f s." %
         (datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), cpu, os.cpu_count() or 1,
          platform.platform(), args.reps, args.scale, args.idle, wall), "",
         "Time is the workload's timed part (work_s; sqlite: the whole process). Ratios are to %s "
         "(lower is better). Peak RSS is the kernel's high-water mark of the process. A run counts only "
         "if it exits 0 with glibc's check value." % base, ""]

    time_ratio = {a: [] for a in names}
    rss_ratio = {a: [] for a in names}
    slow = []
    groups = []
    L.append("## Workloads")
    for name, prog, t, kind in cases:
        sel = lambda a: [r for r in rows if r["workload"] == name and r["threads"] == t and r["allocator"] == a]
        tm = {a: med(sel(a), "work_s") for a in names}
        rss = {a: med(sel(a), "peak_rss_kib") for a in names}
        L += ["", "### %s, %d thread%s — %s" % (name, t, "" if t == 1 else "s", desc[name]), ""]
        hdr = "| allocator | time s | time / %s | peak RSS MiB | RSS / %s |" % (base, base)
        sep = "|---|--:|--:|--:|--:|"
        if kind == "memory":
            hdr += " RSS 2 s after last free MiB | RSS after idle MiB | live MiB |"
            sep += "--:|--:|--:|"
        L += [hdr, sep]
        g = {}
        for a in names:
            tr = tm[a] / tm[base] if tm[a] and tm.get(base) else None
            rr = rss[a] / rss[base] if rss[a] and rss.get(base) else None
            line = "| %s | %s | %s | %s | %s |" % (a, fmt(tm[a], 3), fmt(tr), fmt(rss[a] and rss[a] / 1024, 1),
                                                   fmt(rr))
            if kind == "memory":
                line += " %s | %s | %s |" % tuple(fmt(med(sel(a), f) and med(sel(a), f) / 1024, 1)
                                                  for f in ("rss_2s_kib", "rss_idle_kib", "live_kib"))
            L.append(line)
            if tr:
                time_ratio[a].append(tr)
                g[a] = tr
            if rr:
                rss_ratio[a].append(rr)
        groups.append(("%s t=%d" % (name, t), g))
        others = [tm[a] for a in names if a != "neap" and tm[a]]
        if "neap" in names and tm["neap"] and others and tm["neap"] > 1.25 * min(others):
            slow.append("%s t=%d: %.2f x the best" % (name, t, tm["neap"] / min(others)))

    L += ["", "## Geometric means (ratio to %s, over every workload and thread count)" % base, "",
          "| allocator | time | peak RSS |", "|---|--:|--:|"]
    gm_t = {a: geomean(time_ratio[a]) for a in names}
    gm_r = {a: geomean(rss_ratio[a]) for a in names}
    for a in names:
        L.append("| %s | %s | %s |" % (a, fmt(gm_t[a]), fmt(gm_r[a])))

    if "neap" in names:
        L += ["", "## Targets", ""]
        others = [a for a in names if a != "neap"]
        t_ok = all(gm_t["neap"] < gm_t[a] for a in others)
        r_ok = all(gm_r["neap"] <= gm_r[a] for a in others)
        L.append("- time: neap's geometric mean ahead of every other allocator's: **%s** (neap %s; %s)" %
                 ("met" if t_ok else "missed", fmt(gm_t["neap"]),
                  ", ".join("%s %s" % (a, fmt(gm_t[a])) for a in others)))
        L.append("- time: no workload slower than 1.25 x the best of the others: **%s**%s" %
                 ("met" if not slow else "missed", "" if not slow else " (" + "; ".join(slow) + ")"))
        L.append("- peak RSS: geometric mean at or below the leanest: **%s** (neap %s; %s)" %
                 ("met" if r_ok else "missed", fmt(gm_r["neap"]),
                  ", ".join("%s %s" % (a, fmt(gm_r[a])) for a in others)))
        for w in ("peak", "frag"):
            sel = [r for r in rows if r["workload"] == w and r["allocator"] == "neap"]
            r2, live = med(sel, "rss_2s_kib"), med(sel, "live_kib")
            if r2 is not None and live is not None:
                L.append("- %s and return: RSS 2 s after the last free <= live + 16 MiB: **%s** "
                         "(%.1f MiB, live %.1f MiB)" % (w, "met" if r2 <= live + 16 * 1024 else "missed",
                                                       r2 / 1024, live / 1024))

    if counts:
        L += ["", "## Instructions (callgrind, whole program, scale %g; millions)" % args.callgrind_scale, "",
              "| workload | " + " | ".join(names) + " | neap / %s |" % base,
              "|---|" + "--:|" * (len(names) + 1)]
        for w in SINGLE_THREADED_FOR_CALLGRIND:
            c = {a: counts.get((w, a)) for a in names}
            ratio = c.get("neap") / c[base] if c.get("neap") and c.get(base) else None
            L.append("| %s | %s | %s |" % (w, " | ".join(fmt(c[a] and c[a] / 1e6, 1) for a in names), fmt(ratio)))

    L += ["", "## Plots", "", "![time ratios](time.svg)"]
    svg_bars(os.path.join(out, "time.svg"), "time / %s (lower is better)" % base, groups, names,
             "time relative to %s" % base)
    for w in ("peak", "frag"):
        series = {}
        for a in names:
            pts = [(float(t), r / 1024) for (al, wl, rep, t, r) in traces if al == a and wl == w]
            if pts:
                series[a] = pts
        if series:
            svg_lines(os.path.join(out, "rss-%s.svg" % w), "%s: RSS over time (first repetition)" % w,
                      series, "seconds", "RSS MiB")
            L.append("![RSS over time, %s](rss-%s.svg)" % (w, w))
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
