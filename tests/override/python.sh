#!/bin/bash
# python.sh LIB [REPO_ROOT]: /usr/bin/python3 runs a list of its own
# regression tests (Debian package libpython3.11-testsuite) with
# PYTHONMALLOC=malloc, plain and with LD_PRELOAD=LIB: the same tests pass,
# fail and skip (every test case, from --junit-xml), same summary, same exit
# status (NEAP_PYTHONMALLOC= keeps pymalloc; NEAP_PY_TESTS replaces the
# list). Also proves, from inside a preloaded python3, that the library is
# mapped and that malloc, free, calloc and realloc resolve into it.
# shellcheck source=tests/override/lib.sh
. "$(dirname "$0")/lib.sh"
ov_init python "$@"
ov_require python
if ! "$WL_PYTHON" -c 'import test.libregrtest, test.test_dict' 2>/dev/null; then
    ov_fail "the Python test suite is not installed: install the Debian package libpython3.11-testsuite"
    ov_finish
fi
ov_check_active --from python3 "$WL_PYTHON" -c 'x = [str(i) for i in range(1000)]'

# In-process proof: the symbols the process resolves (dlsym(RTLD_DEFAULT))
# lie inside the library's mappings, and memory from them is usable. A
# non-PIE python3 (Debian's) makes its own PLT stub the canonical address
# of malloc: then the check follows the stub's jmp *GOT(%rip) and reads
# where the GOT slot points.
if out=$(env -u LD_PRELOAD LD_PRELOAD="$OV_LIB" PYTHONMALLOC=malloc "$WL_PYTHON" - "$OV_LIB_REAL" 2>&1 <<'PYEOF'
import ctypes, os, sys
lib = sys.argv[1]
ranges = []
with open("/proc/self/maps") as f:
    for line in f:
        parts = line.split()
        if len(parts) >= 6 and os.path.realpath(parts[5]) == lib:
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            ranges.append((lo, hi))
if not ranges:
    sys.exit("%s is not mapped in this process" % lib)
if os.environ.get("LD_PRELOAD") is None:
    sys.exit("LD_PRELOAD is not set")
def inside(a):
    return any(lo <= a < hi for lo, hi in ranges)
def target(addr):
    """Follow PLT stubs: [endbr64] [bnd] jmp *disp32(%rip)."""
    for _ in range(3):
        if inside(addr):
            return addr
        code = ctypes.string_at(addr, 16)
        i = 4 if code[:4] == b"\xf3\x0f\x1e\xfa" else 0
        if code[i] == 0xF2:
            i += 1
        if code[i:i + 2] != b"\xff\x25":
            return addr
        disp = int.from_bytes(code[i + 2:i + 6], "little", signed=True)
        addr = ctypes.c_void_p.from_address(addr + i + 6 + disp).value
    return addr
me = ctypes.CDLL(None)
for name in ("malloc", "free", "calloc", "realloc"):
    addr = ctypes.cast(getattr(me, name), ctypes.c_void_p).value
    if not inside(target(addr)):
        sys.exit("%s resolves to %#x (-> %#x), outside %s" % (name, addr, target(addr), lib))
me.malloc.restype = ctypes.c_void_p
me.realloc.restype = ctypes.c_void_p
me.realloc.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
me.free.argtypes = (ctypes.c_void_p,)
p = me.malloc(100)
ctypes.memset(p, 0x5A, 100)
p = me.realloc(p, 100000)
if ctypes.string_at(p, 100) != b"\x5a" * 100:
    sys.exit("realloc lost the contents")
me.free(p)
print("ok: %d mappings of %s; malloc, free, calloc, realloc resolve into it" % (len(ranges), lib))
PYEOF
); then
    ov_pass "python3 (in process): $out"
else
    ov_fail "python3 (in process) under LD_PRELOAD: $out"
fi

ov_pair python --allow-plain-failure
ov_finish
