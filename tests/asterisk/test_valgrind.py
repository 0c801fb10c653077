"""The module inside a real Asterisk under valgrind: a short load with a
reload, misses, bad input and a dead server's failures, group members and a
lock with the tick running, then a clean stop.
After the module is unloaded, no valgrind report (invalid access,
uninitialised value, memory lost) may have a frame in its sources. Memory
Asterisk itself still holds at exit ("still reachable") is Asterisk's."""

import os
import re
import tempfile

from pymemcache.client.base import Client

from conftest import general, read_file
from harness.pbx import Asterisk
from harness.ports import free_port

# valgrind runs with --fullpath-after=, so a frame in the module's sources shows its path.
OUR_FRAME = re.compile(r"\(\S*src/(res_memcached\w*|glue/\w+|core/\w+)\.c:\d+\)")


def reports(log_text):
    """valgrind's reports: blank-line separated blocks of '==PID== ' lines."""
    blocks, current = [], []
    for line in log_text.splitlines():
        body = re.sub(r"^==\d+== ?", "", line)
        if body.strip():
            current.append(body)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def test_no_valgrind_report_points_into_the_module(memcached, figures):
    log = tempfile.mktemp(prefix="valgrind-", suffix=".log")
    ast = Asterisk(read_file("extensions.conf"),
                   general("server=" + memcached.address, "group_lease=2"),
                   wrapper=["valgrind", "--leak-check=full", "--show-leak-kinds=all",
                            "--keep-debuginfo=yes", "--num-callers=40", "--fullpath-after=", "--log-file=" + log],
                   boot_limit=300)
    try:
        client = Client(("127.0.0.1", memcached.port))
        for name in ("load_done", "load_failures", "load_ops", "load_counter0", "load_counter1",
                     "load_counter2", "load_counter3"):
            client.set(name, b"0")
        ast.cli("dialplan set global LOAD_ITERATIONS 5")
        for _ in range(10):
            ast.cli("channel originate Local/load@tests application Wait 0")
        ast.cli("module reload res_memcached")
        ast.wait_for(lambda: client.get("load_done") == b"10", limit=300)
        assert client.get("load_failures") == b"0"
        # Groups and locks: members that hang up, a lock taken and released, ticks under way.
        client.set("group_results", b"")
        for name, value in (("GROUP", "vg"), ("GROUP_CATEGORY", "cat"), ("GROUP_LIMIT", "2"),
                            ("LOCK_NAME", "vg_lock"), ("LOCK_TTL", "30"), ("LOCK_HOLD", "1")):
            ast.cli("dialplan set global %s %s" % (name, value))
        for _ in range(3):
            ast.cli("channel originate Local/member@tests application Wait 600")
        ast.cli("channel originate Local/holder-vg@tests application Wait 0")
        ast.wait_for(lambda: len((client.get("group_results") or b"").split()) == 3, limit=300)
        ast.wait_for(lambda: ast.global_var("HOLDER_vg") == "1,1,MEMCACHED_SUCCESS", limit=300)
        assert ast.eval("MCDGROUP_COUNT(vg@cat)") == "2"
        ast.cli("memcached show groups")
        ast.cli("channel request hangup all")
        ast.wait_for(lambda: ast.eval("MCDGROUP_COUNT(vg@cat)") == "0", limit=300)
        # Misses, refusals and a dead second server's failures go through their paths too.
        ast.write_memcached_conf(general("server=" + memcached.address,
                                         "server=127.0.0.1:%d" % free_port()))
        ast.cli("module reload res_memcached")
        for expression in ("MCD(missing)", "MCDCOUNTER(x,abc)", "MCD(a${URIDECODE(%0A)}b)", "MCD(a)",
                           "MCD(b)", "MCD(c)", "MCD(d)", "MCDCOUNTER(e,1)"):
            ast.eval(expression)
        # Unloading must give back everything: what is left at exit is then a leak.
        assert "Unloaded res_memcached" in ast.cli("module unload res_memcached")
    finally:
        ast.stop(limit=300)
    with open(log) as f:
        text = f.read()
    os.remove(log)
    summary = re.search(r"ERROR SUMMARY: (\d+) errors", text)
    assert summary, "valgrind wrote no summary"
    ours = ["\n".join(block) for block in reports(text)
            if "still reachable" not in block[0] and any(OUR_FRAME.search(line) for line in block)]
    for report in ours:
        print(report + "\n")
    assert ours == []
    lost = re.search(r"definitely lost: ([\d,]+) bytes", text)
    figures("valgrind, Asterisk with res_memcached under a short load and a reload: %s reports "
            "in all (Asterisk's own, mostly possibly-lost at exit), %d with a frame in "
            "res_memcached; definitely lost in all: %s bytes"
            % (summary.group(1), len(ours), lost.group(1) if lost else "0"))
