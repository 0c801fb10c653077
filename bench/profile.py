"""Where an operation's instructions go: each benchmark loop runs under
callgrind (which counts instructions, so the figures repeat from run to run
whatever else the machine does) in a private Asterisk against a real memcached.
For each operation it prints, per call: the module's entry point with everything
it calls, the part spent in libmemcached, the part in Asterisk's API (setting
MCDRESULT, references, locks) and the rest (the module's own code and libc).
A program that prints figures; it never fails on them.
"""

import os
import re
import subprocess
import sys
import tempfile

from bench.bench import run_channels
from harness.pbx import MODULES, Asterisk
from harness.servers import Memcached

HERE = os.path.dirname(os.path.abspath(__file__))

ROUNDS = int(os.environ.get("PROFILE_ROUNDS", "2000"))
OPERATIONS = [  # label, bench extension, the module's entry point
    ("MCD write", "2", "mcd_write"),
    ("MCD read", "3", "mcd_read"),
    ("mcdappend", "4", "mcdappend_exec"),
    ("MCDCOUNTER(k,1)", "5", "counter_read"),
    ("mcdmget of 8 keys", "9", "mcdmget_exec"),
    ("MCD write, MCDNOREPLY=yes", "11", "mcd_write"),
]
# "  1,234 (0.5%)  *  file:function [object]" opens a caller's block in --tree=calling;
# "  1,234 (0.5%)  >   file:function (N x) [object]" is one of its callees.
LINE = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+([*>])\s+\S*?:?([\w.]+)(?: \(([\d,]+)x\))?(?: \[(.*)\])?$")
# callgrind_annotate names the object of a function it finds the source of, relative to its
# working directory, only sometimes: it runs from / and a module function is also known by
# its source file.
MODULE = re.compile(r"res_memcached\.so|src/(res_memcached|mcd_\w+)\.c:")


def profile(exten, out_file):
    server = Memcached()
    with open(os.path.join(HERE, "extensions.conf")) as f:
        extensions = f.read()
    ast = Asterisk(extensions, "[general]\nserver=%s\n" % server.address,
                   modules=MODULES + ["func_db.so"], verbose_log=False, boot_limit=300,
                   wrapper=["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out_file])
    try:
        run_channels(ast, exten, 1, ROUNDS)
    finally:
        ast.stop(limit=120)
        server.stop()


def split_costs(out_file, entry):
    """Per call of entry: (inclusive, in libmemcached, in Asterisk, rest)."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--tree=calling",
                           "--threshold=100", out_file], capture_output=True, text=True,
                          cwd="/").stdout
    # Each module function's calls: (callee, in the module?, its object, instructions).
    calls_out, inclusive, calls = {}, 0, 0
    caller = None
    for line in text.splitlines():
        found = LINE.match(line)
        if not found:
            continue
        cost, kind, function, times, obj = found.groups()
        cost, obj = int(cost.replace(",", "")), obj or ""
        in_module = bool(MODULE.search(line))
        if kind == "*":
            caller = function if in_module else None
            if caller == entry:
                inclusive = cost
            continue
        if function == entry and in_module and times:
            calls += int(times.replace(",", ""))
        if caller:
            calls_out.setdefault(caller, []).append((function, in_module, obj, cost))
    # Only the module functions that entry reaches, each counted once.
    reached, todo = set(), [entry]
    while todo:
        function = todo.pop()
        if function in reached:
            continue
        reached.add(function)
        todo += [f for f, in_module, _, _ in calls_out.get(function, []) if in_module]
    libmemcached = asterisk = 0
    for function in reached:
        for callee, in_module, obj, cost in calls_out.get(function, []):
            if "libmemcached" in obj:
                libmemcached += cost
            elif obj.endswith("/asterisk"):
                asterisk += cost
    calls = max(calls, 1)
    return [x / calls for x in (inclusive, libmemcached, asterisk,
                                inclusive - libmemcached - asterisk)]


def main():
    sys.stdout.reconfigure(line_buffering=True)
    print("Instructions per operation (callgrind), %d rounds each" % ROUNDS)
    print("%-28s %12s %14s %12s %16s" % ("operation", "module call", "libmemcached", "Asterisk",
                                         "own code + libc"))
    folder = tempfile.mkdtemp(prefix="profile-")
    for label, exten, entry in OPERATIONS:
        out_file = os.path.join(folder, "callgrind.%s" % exten)
        profile(exten, out_file)
        total, lib, ast, own = split_costs(out_file, entry)
        print("%-28s %12.0f %14.0f %12.0f %16.0f" % (label, total, lib, ast, own))
    print("(callgrind output kept in %s)" % folder)


if __name__ == "__main__":
    main()
