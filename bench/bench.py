"""res_memcached benchmark: prints one table of figures, never fails on timing.

Runs in the sandbox: a real memcached on loopback and a private Asterisk.
- cost per operation in a dialplan loop (one channel) for MCD write/read,
  mcdappend, MCDCOUNTER, next to the loop's own cost (Set(GLOBAL(x)=...)),
  Asterisk's DB() (AstDB), and the same operation straight from libmemcached
  (bench/raw, one thread);
- module overhead = dialplan cost - loop floor - raw cost, the floor being the
  cheaper of Set(GLOBAL(x)=v) and a channel variable's Set(V=v);
- throughput with 1, 8, 64, 256 channels against as many raw client threads;
- the same operations in each deployment: TCP loopback, a unix socket,
  memcached's proxy and twemproxy (two backends each), stunnel to a TLS-only
  memcached; dialplan and raw client measured in one run;
- Asterisk's resident memory after two bursts of BENCH_MEMORY_OPS writes, each
  measured once Asterisk's queues drained: a leak would grow the second.
Everything talks the text protocol, the module's default.
Sizes: BENCH_N (rounds per single-channel loop), BENCH_REPEATS (runs of each, the
fastest kept), BENCH_THROUGHPUT_OPS (total
per concurrency level), BENCH_MEMORY_OPS.
"""

import json
import os
import platform
import re
import subprocess
import sys
import time

from pymemcache.client.base import Client

from harness.pbx import MODULES, Asterisk
from harness.servers import Memcached, MemcachedProxy, Stunnel, TlsMemcached, Twemproxy

HERE = os.path.dirname(os.path.abspath(__file__))

N = int(os.environ.get("BENCH_N", "10000"))
# Each single-channel figure is the fastest of REPEATS runs, taken in turn with the
# others', so that a burst of load from elsewhere on the machine does not land in one.
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
THROUGHPUT_OPS = int(os.environ.get("BENCH_THROUGHPUT_OPS", "40000"))
MEMORY_OPS = int(os.environ.get("BENCH_MEMORY_OPS", "1000000"))
RAW = os.path.join(HERE, "raw")
# Where the figures go as JSON, for bench/charts.py.
RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(HERE, "results.json"))
results = {"cost": [], "throughput": [], "deployments": [], "memory": {}}

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
# Other ways to do the same work: label, extension, raw op, operations per round.
ALTERNATIVES = [
    ("8 x MCD read", "10", "get", 8),
    ("mcdmget of 8 keys", "9", "mget8", 1),
    ("MCD write", "2", "set", 1),
    ("MCD write, MCDNOREPLY=yes", "11", "setnr", 1),
    ("MCDCOUNTER(k,1)", "5", "incr", 1),
    ("MCDCOUNTER(k,1), MCDNOREPLY=yes", "12", None, 1),
    # Groups and locks, against MCDCOUNTER above: a move is a join (one incr) and a
    # confirmed leave (one decr); a count is one get; a lock one add, an unlock gets + cas.
    ("MCDGROUP move (join + leave)", "13", "incr", 2),
    ("MCDGROUP_COUNT", "14", "get", 1),
    ("MCDLOCK + MCDUNLOCK", "15", None, 1),
    # A rate check: a multi-get of the 21 buckets, then (admitted) an incr.
    ("MCDRATE, admitted", "16", None, 1),
    ("MCDRATE, refused", "17", None, 1),
]
# The operations measured in every deployment: label, extension, raw op.
DEPLOYMENT_OPS = [
    ("MCD write", "2", "set"),
    ("MCD read", "3", "get"),
    ("MCDCOUNTER(k,1)", "5", "incr"),
    ("mcdmget of 8 keys", "9", "mget8"),
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


def raw(server, op, count, threads):
    """The raw client's (operations, seconds) against server (anything with an address)."""
    host, _, port = server.address.rpartition(":") if not server.address.startswith("/") \
        else (server.address, "", "0")
    out = subprocess.run([RAW, host, port, op, str(count), str(threads), "0"],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[2]), float(out[3])


# The name "memcached show stats" gives each raw operation's counterpart.
MODULE_OPS = {"set": "set", "get": "get", "append": "append", "incr": "counter"}


def module_mean_us(ast, op):
    """The mean time the module itself measured for op (pool, key, libmemcached), or None."""
    for line in ast.cli("memcached show stats").splitlines():
        fields = line.split()
        if op and len(fields) >= 3 and fields[0] == op and fields[1] != "0":
            return float(fields[2])
    return None


def deployments(ast, tcp):
    """Each deployment in turn (the module reloaded onto it): the fastest of REPEATS runs of
    each operation in the dialplan and from the raw client, through the same address."""
    print("Deployments, one channel, fastest of %d runs of %d rounds (microseconds per operation:"
          " dialplan / raw client)" % (REPEATS, N))
    print("%-34s" % "deployment" + "".join("%20s" % label for label, _, _ in DEPLOYMENT_OPS))
    backends = [Memcached(), Memcached()]
    unix = Memcached(unix_socket=True)
    tls = TlsMemcached()
    started = [unix, tls, *backends]
    try:
        tunnel = Stunnel(tls)
        started.append(tunnel)
        mcproxy = MemcachedProxy(backends)
        started.append(mcproxy)
        twemproxy = Twemproxy(backends)
        started.append(twemproxy)
        for label, server in (("TCP loopback", tcp), ("unix socket", unix),
                              ("memcached proxy, 2 backends", mcproxy),
                              ("twemproxy, 2 backends", twemproxy),
                              ("stunnel (unix socket) + TLS", tunnel)):
            ast.write_memcached_conf("[general]\nserver=%s\npool_size=300\npool_wait=5\n"
                                     % server.address)
            if "successfully" not in ast.cli("module reload res_memcached"):
                raise RuntimeError("reload onto %s failed" % label)
            best, best_raw = {}, {}
            for _ in range(REPEATS):
                for _, exten, op in DEPLOYMENT_OPS:
                    (start, end), = run_channels(ast, exten, 1, N)
                    best[exten] = min(best.get(exten, 1e9), (end - start) / N * 1e6)
                    count, seconds = raw(server, op, N, 1)
                    best_raw[op] = min(best_raw.get(op, 1e9), seconds / count * 1e6)
            results["deployments"].append({"deployment": label, "ops": [
                {"operation": op_label, "dialplan_us": best[exten], "raw_us": best_raw[op]}
                for op_label, exten, op in DEPLOYMENT_OPS]})
            print("%-34s" % label + "".join("%20s" % ("%.1f / %.1f" % (best[exten], best_raw[op]))
                                            for _, exten, op in DEPLOYMENT_OPS))
    finally:
        for server in reversed(started):
            server.stop()
        ast.write_memcached_conf("[general]\nserver=%s\npool_size=300\npool_wait=5\n" % tcp.address)
        ast.cli("module reload res_memcached")


def settle(ast, limit=60):
    """Asterisk's resident memory once its queues drained: the RSS after it stopped falling."""
    last = rss_kib(ast.proc.pid)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(2)
        now = rss_kib(ast.proc.pid)
        if now >= last:
            return now
        last = now
    return last


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
        print("res_memcached benchmark: Asterisk %s, memcached on 127.0.0.1, text protocol"
              % ast.cli("core show version").split()[1])
        print("machine: %s, %d CPUs, %s" % (platform.machine(), os.cpu_count(),
                                            platform.platform()))
        print()
        print("Cost per operation, one channel, fastest of %d runs of %d rounds (microseconds)"
              % (REPEATS, N))
        print("%-30s %10s %11s %10s %13s %10s" % ("operation", "dialplan", "raw client",
                                                   "in module", "module extra", "extra/raw"))
        costs, raw_costs, inside = {}, {}, {}
        runs = [(exten, op) for _, exten, op in VARIANTS] + \
               [(exten, op) for _, exten, op, _ in ALTERNATIVES]
        for _ in range(REPEATS):
            for exten, op in runs:
                ast.cli("memcached reset stats")
                (start, end), = run_channels(ast, exten, 1, N)
                cost = (end - start) / N * 1e6
                if cost < costs.get(exten, 1e9):
                    costs[exten] = cost
                    inside[exten] = module_mean_us(ast, MODULE_OPS.get(op))
                if op:
                    count, seconds = raw(server, op, N, 1)
                    raw_costs[op] = min(raw_costs.get(op, 1e9), seconds / count * 1e6)
        floor = min(costs["1"], costs["8"])
        for label, exten, op in VARIANTS:
            dialplan = costs[exten]
            if op:
                raw_us = raw_costs[op]
                extra = dialplan - floor - raw_us
                results["cost"].append({"operation": label, "dialplan_us": dialplan, "floor_us": floor,
                                        "raw_us": raw_us, "extra_us": extra})
                print("%-30s %10.1f %11.1f %10.1f %13.1f %9.0f%%" % (
                    label, dialplan, raw_us, inside[exten], extra, 100 * extra / raw_us))
            else:
                print("%-30s %10.1f %11s %10s %13s %10s" % (label, dialplan, "-", "-", "-", "-"))
        print()
        print("The same work done other ways, one channel, as above (microseconds per round)")
        print("%-34s %10s %10s %12s" % ("operation", "dialplan", "raw client", "per key/op"))
        for label, exten, op, per_round in ALTERNATIVES:
            raw_text = "%.1f" % (raw_costs[op] * per_round) if op else "-"
            print("%-34s %10.1f %10s %12.1f" % (label, costs[exten], raw_text,
                                                costs[exten] / (8 if "8" in label else 1)))
        # Every fire-and-forget step should have landed once the server caught up.
        client = Client(("127.0.0.1", server.port))
        deadline = time.monotonic() + 10
        while int(client.get("bench_noreply_counter") or 0) < N * REPEATS \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        print("MCDNOREPLY counter steps found on the server afterwards: %d of %d"
              % (int(client.get("bench_noreply_counter") or 0), N * REPEATS))
        client.close()
        print()
        deployments(ast, server)
        print()
        print("Throughput, MCD read loops on N channels vs N raw get threads, and the dialplan's"
              " own loop (Set(V=v)) on N channels (%d operations per level)" % THROUGHPUT_OPS)
        print("%-12s %16s %16s %8s %18s" % ("concurrency", "dialplan ops/s", "raw ops/s", "ratio",
                                            "floor loop ops/s"))
        for level in (1, 8, 64, 256):
            rounds = max(1, THROUGHPUT_OPS // level)
            rates = []
            for exten in ("3", "8"):
                times = run_channels(ast, exten, level, rounds)
                wall = max(e for _, e in times) - min(s for s, _ in times)
                rates.append(level * rounds / wall)
            count, seconds = raw(server, "get", rounds, level)
            raw_rate = count / seconds
            results["throughput"].append({"channels": level, "dialplan_ops": rates[0], "raw_ops": raw_rate,
                                          "floor_ops": rates[1]})
            print("%-12d %16.0f %16.0f %7.0f%% %18.0f" % (level, rates[0], raw_rate,
                                                          100 * rates[0] / raw_rate, rates[1]))
        print()
        print("MCDRATE next to MCDCOUNTER on 64 channels (%d operations each)" % THROUGHPUT_OPS)
        for label, exten in (("MCDCOUNTER(k,1)", "5"), ("MCDRATE, admitted", "16"), ("MCDRATE, refused", "17")):
            times = run_channels(ast, exten, 64, max(1, THROUGHPUT_OPS // 64))
            wall = max(e for _, e in times) - min(s for s, _ in times)
            rate = 64 * max(1, THROUGHPUT_OPS // 64) / wall
            results.setdefault("rates", []).append({"operation": label, "channels": 64, "ops": rate})
            print("%-30s %10.0f ops/s" % (label, rate))
        print()
        print("Asterisk resident memory: %d KiB after start, %d KiB after the runs above"
              % (started_rss, rss_kib(ast.proc.pid)))
        # A burst of dialplan backs up Asterisk's CDR queue (stasis/m:cdr:aggregator) by
        # hundreds of thousands of messages, which drain in seconds into arenas glibc keeps:
        # so two equal bursts, each measured once settled; a leak grows the second.
        per_channel = MEMORY_OPS // 8
        settled = []
        for _ in range(2):
            run_channels(ast, "2", 8, per_channel)
            settled.append(settle(ast))
        results["memory"] = {"writes": per_channel * 8, "first_kib": settled[0], "second_kib": settled[1]}
        print("Asterisk resident memory, settled: %d KiB after %d MCD writes on 8 channels, %d KiB "
              "after %d more (%+d KiB)" % (settled[0], per_channel * 8, settled[1], per_channel * 8,
                                          settled[1] - settled[0]))
    finally:
        ast.stop()
        server.stop()


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    main()
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=1)
    print("\nfigures written to %s (bench/charts.py draws them)" % RESULTS)
