"""res_memcached benchmark: prints one table of figures, never fails on timing.

Runs in the sandbox: a real memcached on loopback and a private Asterisk.
- cost per operation in a dialplan loop (one channel) for MCD write/read,
  mcdappend, MCDCOUNTER, next to the loop's own cost (Set(GLOBAL(x)=...)),
  Asterisk's DB() (AstDB), and the same operation straight from libmemcached
  (bench/raw, one thread);
- module overhead = dialplan cost - loop floor - raw cost, the floor being the
  cheaper of Set(GLOBAL(x)=v) and a channel variable's Set(V=v);
- throughput with 1, 8, 64, 256 channels against as many raw client threads;
- Asterisk's resident memory before and after BENCH_MEMORY_OPS operations.
Sizes: BENCH_N (rounds per single-channel loop), BENCH_THROUGHPUT_OPS (total
per concurrency level), BENCH_MEMORY_OPS.
"""

import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sandbox"))
from pbx import MODULES, Asterisk, Memcached  # noqa: E402

N = int(os.environ.get("BENCH_N", "20000"))
THROUGHPUT_OPS = int(os.environ.get("BENCH_THROUGHPUT_OPS", "40000"))
MEMORY_OPS = int(os.environ.get("BENCH_MEMORY_OPS", "1000000"))
RAW = os.path.join(HERE, "raw")

VARIANTS = [  # label, dialplan extension, raw libmemcached op
    ("loop floor: Set(GLOBAL(x)=v)", "1", None),
    ("loop floor: Set(V=v)", "8", None),
    ("MCD write", "2", "set"),
    ("MCD read", "3", "get"),
    ("mcdappend", "4", "append"),
    ("MCDCOUNTER(k,1)", "5", "incr"),
    ("DB() write (AstDB)", "6", None),
    ("DB() read (AstDB)", "7", None),
]


def run_channels(ast, exten, channels, rounds):
    """Run `channels` channels of `rounds` rounds at once; return their (start, end) times."""
    before = set(k for k in ast.globals() if k.startswith("RUN_"))
    ast.cli("dialplan set global GO 0")
    ast.cli("dialplan set global BENCH_N %d" % rounds)
    for _ in range(channels):
        out = ast.cli("channel originate Local/%s@bench application Wait 600" % exten)
        if out.strip():
            raise RuntimeError("originate: " + out)
    # Let every channel reach its starting line before the signal.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        count = re.search(r"(\d+) active channel", ast.cli("core show channels count"))
        if count and int(count.group(1)) >= 2 * channels:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    ast.cli("dialplan set global GO 1")
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        runs = {k: v for k, v in ast.globals().items() if k.startswith("RUN_") and k not in before}
        if len(runs) >= channels:
            ast.cli("channel request hangup all")
            return [tuple(map(float, v.split())) for v in runs.values()]
        time.sleep(0.2)
    raise RuntimeError("channels did not finish")


def raw(server, op, count, threads, binary=1):
    out = subprocess.run([RAW, "127.0.0.1", str(server.port), op, str(count), str(threads),
                          str(binary)], capture_output=True, text=True, check=True).stdout.split()
    return int(out[2]), float(out[3])


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def main():
    server = Memcached()
    with open(os.path.join(HERE, "extensions.conf")) as f:
        extensions = f.read()
    ast = Asterisk(extensions, "[general]\nserver=%s\npool_size=300\npool_wait=5\n" % server.address,
                   modules=MODULES + ["func_db.so"], verbose_log=False)
    try:
        started_rss = rss_kib(ast.proc.pid)
        print("res_memcached benchmark: Asterisk %s, memcached on 127.0.0.1, binary protocol"
              % ast.cli("core show version").split()[1])
        print("machine: %s, %d CPUs, %s" % (platform.machine(), os.cpu_count(),
                                            platform.platform()))
        print()
        print("Cost per operation, one channel, %d rounds (microseconds)" % N)
        print("%-30s %12s %12s %14s %10s" % ("operation", "dialplan", "raw client",
                                             "module extra", "extra/raw"))
        costs = {}
        for label, exten, op in VARIANTS:
            (start, end), = run_channels(ast, exten, 1, N)
            costs[exten] = (end - start) / N * 1e6
        floor = min(costs["1"], costs["8"])
        for label, exten, op in VARIANTS:
            dialplan = costs[exten]
            if op:
                count, seconds = raw(server, op, N, 1)
                raw_us = seconds / count * 1e6
                extra = dialplan - floor - raw_us
                print("%-30s %12.1f %12.1f %14.1f %9.0f%%" % (label, dialplan, raw_us, extra,
                                                              100 * extra / raw_us))
            else:
                print("%-30s %12.1f %12s %14s %10s" % (label, dialplan, "-", "-", "-"))
        print()
        print("Throughput, MCD read loops on N channels vs N raw get threads "
              "(%d operations per level)" % THROUGHPUT_OPS)
        print("%-12s %16s %16s %8s" % ("concurrency", "dialplan ops/s", "raw ops/s", "ratio"))
        for level in (1, 8, 64, 256):
            rounds = max(1, THROUGHPUT_OPS // level)
            times = run_channels(ast, "3", level, rounds)
            wall = max(e for _, e in times) - min(s for s, _ in times)
            dial_rate = level * rounds / wall
            count, seconds = raw(server, "get", rounds, level)
            raw_rate = count / seconds
            print("%-12d %16.0f %16.0f %7.0f%%" % (level, dial_rate, raw_rate,
                                                   100 * dial_rate / raw_rate))
        print()
        before = rss_kib(ast.proc.pid)
        print("Asterisk resident memory: %d KiB after start, %d KiB after the runs above"
              % (started_rss, before))
        per_channel = MEMORY_OPS // 8
        run_channels(ast, "2", 8, per_channel)
        after = rss_kib(ast.proc.pid)
        print("Asterisk resident memory: %d KiB before, %d KiB after %d more MCD writes "
              "on 8 channels (%+d KiB)" % (before, after, per_channel * 8, after - before))
    finally:
        ast.stop()
        server.stop()


if __name__ == "__main__":
    main()
