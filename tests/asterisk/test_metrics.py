"""res_memcached's figures on Asterisk's Prometheus endpoint: a real Asterisk
with its HTTP server and res_prometheus on a loopback port, scraped over HTTP.
Counters move by exactly the operations made; a killed server shows 0; the
modules unload and load under scrapes; promtool finds nothing to say."""

import os
import re
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import HERE, PREFIX, Pbx, general, read_file, require
from harness.pbx import Asterisk, MODULES, module_dir
from harness.servers import Memcached

# A label value is quoted, with \\, \" and \n escaped (the text exposition format).
QUOTED = r'"(?:[^"\\\n]|\\.)*"'
SAMPLE = re.compile(r'^(asterisk_memcached_\w+)(?:\{((?:\w+=%s,?)*)\})? (\S+)$' % QUOTED, re.M)
LABEL = re.compile(r'(\w+)=(%s)' % QUOTED)


def metrics_available():
    return os.path.exists(os.path.join(module_dir(), "res_prometheus.so"))


pytestmark = pytest.mark.skipif(
    not metrics_available() and bool(os.environ.get("MCD_OPTIONAL_TOOLS")),
    reason="this Asterisk has no res_prometheus (Asterisk 16)")


def samples(text):
    """{(name, labels): value} of the module's samples in a scrape."""
    found = {}
    for name, labels, value in SAMPLE.findall(text or ""):
        pairs = ((label, unescape(quoted[1:-1])) for label, quoted in LABEL.findall(labels))
        found[(name, tuple(sorted(pairs)))] = float(value)
    return found


def unescape(text):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def escape(text):
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def value(found, name, **labels):
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def scraped():
    server, down = Memcached(), Memcached()
    ast = Asterisk(read_file("extensions.conf"),
                   general("server=" + server.address, "server=" + down.address, "prefixkey=" + PREFIX,
                           "retry_timeout=60", "connect_timeout=200", "timeout=200"),
                   metrics=True)
    yield Pbx(ast), server, down
    ast.stop()
    server.stop()
    down.stop()


def test_counters_move_by_exactly_the_operations_made(scraped):
    pbx, _, _ = scraped
    before = samples(pbx.ast.scrape())
    assert value(before, "asterisk_memcached_pool_size", pool="calls") == 64
    for n in range(7):
        assert pbx.app("mcdset(m%d,v)" % n)[1] == "MEMCACHED_SUCCESS"
    for n in range(4):
        assert pbx.fn("${MCD(m%d)}" % n) == ("v", "MEMCACHED_SUCCESS")
    assert pbx.fn("${MCD(never_written)}")[1] == "MEMCACHED_NOTFOUND"
    after = samples(pbx.ast.scrape())

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    ok = dict(outcome="answer")
    assert moved("asterisk_memcached_operations_total", operation="set", result="MEMCACHED_SUCCESS", **ok) == 7
    assert moved("asterisk_memcached_operations_total", operation="get", result="MEMCACHED_SUCCESS", **ok) == 4
    assert moved("asterisk_memcached_operations_total", operation="get", result="MEMCACHED_NOTFOUND", **ok) == 1
    assert moved("asterisk_memcached_operation_seconds_count", operation="set") == 7
    assert moved("asterisk_memcached_operation_seconds_count", operation="get") == 5
    # A valid histogram: buckets cumulative, +Inf equal to the count, a sum of real time.
    buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in after.items()
                     if name == "asterisk_memcached_operation_seconds_bucket"
                     and dict(labels)["operation"] == "get")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert buckets[-1] == (float("inf"), value(after, "asterisk_memcached_operation_seconds_count",
                                               operation="get"))
    assert value(after, "asterisk_memcached_operation_seconds_sum", operation="get") > 0


def test_a_killed_server_shows_0_and_the_other_1(scraped):
    pbx, server, down = scraped
    found = samples(pbx.ast.scrape())
    assert value(found, "asterisk_memcached_server_up", server=server.address) == 1
    down.stop()

    def seen_down():
        # The module learns it from calls (and from its own tick): no scrape waits on the network.
        for n in range(6):
            pbx.fn("${MCD(k%d)}" % n)
        return value(samples(pbx.ast.scrape()), "asterisk_memcached_server_up", server=down.address) == 0

    pbx.ast.wait_for(seen_down)
    found = samples(pbx.ast.scrape())
    assert value(found, "asterisk_memcached_server_up", server=server.address) == 1
    assert value(found, "asterisk_memcached_server_faults", server=down.address) >= 1


def test_groups_and_locks_are_counted(scraped):
    pbx, _, _ = scraped
    pbx.ast.cli("dialplan set global LOCK_NAME metric_lock")
    pbx.ast.cli("dialplan set global LOCK_TTL 60")
    pbx.ast.cli("dialplan set global LOCK_HOLD 30")
    pbx.ast.cli("channel originate Local/holder-metrics@tests application Wait 0")
    pbx.ast.wait_for(lambda: pbx.ast.global_var("HOLDER_metrics_TOOK") == "1")
    found = samples(pbx.ast.scrape())
    node = [dict(labels)["node"] for (name, labels) in found if name == "asterisk_memcached_locks_held"]
    assert value(found, "asterisk_memcached_locks_held", node=node[0]) == 1
    assert value(found, "asterisk_memcached_group_members", node=node[0]) == 0
    pbx.ast.cli("channel request hangup all")


def test_promtool_finds_the_module_metrics_and_the_alert_rules_sound(scraped, tmp_path):
    require("promtool")
    pbx, _, _ = scraped
    pbx.app("mcdset(k,v)")
    ours = "".join(line + "\n" for line in pbx.ast.scrape().splitlines()
                   if re.match(r"(# (HELP|TYPE) )?asterisk_memcached_", line))
    assert "# TYPE asterisk_memcached_operation_seconds histogram" in ours
    checked = subprocess.run(["promtool", "check", "metrics"], input=ours, capture_output=True, text=True)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr
    rules = subprocess.run(["promtool", "check", "rules",
                            os.path.join(HERE, "..", "..", "doc", "prometheus-alerts.yml")],
                           capture_output=True, text=True)
    assert rules.returncode == 0 and "SUCCESS: 4 rules found" in rules.stdout, rules.stdout + rules.stderr


def test_modules_unload_and_load_under_scrapes(scraped, figures):
    pbx, _, _ = scraped
    ast = pbx.ast
    stop = threading.Event()
    scrapes = {"served": 0, "not served": 0}
    in_flight = threading.Semaphore(2)
    held = []

    def scrape_all_the_time():
        while not stop.is_set():
            with in_flight:
                scrapes["served" if ast.scrape() else "not served"] += 1
            time.sleep(0.001)

    def no_scrape_under_way():
        """Take both slots: once held, no scrape is under way, nor starts."""
        for _ in range(2):
            in_flight.acquire()
            held.append(1)

    def scrapes_again():
        while held:
            held.pop()
            in_flight.release()

    scrapers = [threading.Thread(target=scrape_all_the_time) for _ in range(2)]
    for scraper in scrapers:
        scraper.start()
    try:
        # res_memcached_prometheus and res_memcached, unloaded and loaded under scrapes.
        for command in ("module unload res_memcached_prometheus.so", "module unload res_memcached.so",
                        "module load res_memcached.so", "module load res_memcached_prometheus.so") * 10:
            ast.cli(command)
        # res_prometheus cannot go while res_memcached_prometheus needs it...
        ast.cli("module unload res_prometheus.so")
        assert "Running" in ast.cli("module show like res_prometheus")
        # ...and goes, with it, while no scrape is under way: Asterisk 22.10 itself crashes
        # when res_prometheus is unloaded during a scrape, with or without this module.
        no_scrape_under_way()
        for command in ("module unload res_memcached_prometheus.so", "module unload res_prometheus.so",
                        "module load res_prometheus.so", "module load res_memcached_prometheus.so"):
            ast.cli(command)
        scrapes_again()
        ast.wait_for(lambda: "asterisk_memcached_server_up" in (ast.scrape() or ""))
    finally:
        stop.set()
        scrapes_again()
        for scraper in scrapers:
            scraper.join()
    assert ast.proc.poll() is None
    assert pbx.app("mcdset(after,reloads)")[1] == "MEMCACHED_SUCCESS"
    figures("metrics: res_memcached_prometheus and res_memcached unloaded and loaded 10 times under "
            "%d scrapes (%d answered), then res_prometheus with them: Asterisk still running"
            % (sum(scrapes.values()), scrapes["served"]))


def test_res_memcached_loads_and_works_without_res_prometheus(start_pbx, memcached):
    # The other tests' Asterisks load no res_prometheus at all; this one asks for the metrics
    # module too, which must decline alone.
    pbx = start_pbx(general("server=" + memcached.address))
    out = pbx.ast.cli("module load res_memcached_prometheus.so")
    assert "Running" not in pbx.ast.cli("module show like res_memcached_prometheus")
    assert "Running" in pbx.ast.cli("module show like res_memcached.so")
    assert pbx.app("mcdset(k,v)")[1] == "MEMCACHED_SUCCESS", out
    assert MODULES.count("res_prometheus.so") == 0


def ours(text):
    """The module's own lines of a scrape (its samples, # HELP and # TYPE lines)."""
    return "".join(line + "\n" for line in text.splitlines()
                   if re.match(r"(# (HELP|TYPE) )?asterisk_memcached_", line))


def assert_promtool_parses(text):
    """promtool parses the whole scrape (Asterisk's own lines may draw lint remarks, exit 3, but
    no parse error, exit 1), and has nothing at all to say about the module's own lines."""
    whole = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert whole.returncode in (0, 3) and "error" not in whole.stdout + whole.stderr, \
        whole.stdout + whole.stderr
    mine = subprocess.run(["promtool", "check", "metrics"], input=ours(text), capture_output=True, text=True)
    assert mine.returncode == 0 and not (mine.stdout + mine.stderr).strip(), mine.stdout + mine.stderr


def test_label_values_with_quotes_and_backslashes_are_escaped():
    require("promtool")
    # node_id takes any printable bytes; so does a socket path in server=, reached here through a
    # symbolic link named with a quote and a backslash.
    server = Memcached(unix_socket=True)
    odd_path = os.path.join(server.dir, 'mc"1\\s.sock')
    # Escaped, this one is longer than the 127 bytes res_prometheus keeps of a label value.
    long_path = os.path.join(server.dir, '"' * 85)
    for path in (odd_path, long_path):
        os.symlink(server.socket_path, path)
    ast = Asterisk(read_file("extensions.conf"),
                   general("server=" + odd_path, "server=" + long_path, 'node_id=pbx"1\\a',
                           "prefixkey=" + PREFIX), metrics=True)
    try:
        pbx = Pbx(ast)
        assert pbx.app("mcdset(k,v)")[1] == "MEMCACHED_SUCCESS"
        text = ast.scrape()
        assert 'asterisk_memcached_group_members{node="pbx\\"1\\\\a"} 0\n' in text
        assert 'asterisk_memcached_server_up{server="%s"} 1\n' % escape(odd_path) in text
        # Cut between escapes: \" pairs, as many as fit in 127 bytes after the folder's path.
        folder = escape(server.dir + "/")
        cut = folder + '\\"' * ((127 - len(folder)) // 2)
        assert 'asterisk_memcached_server_up{server="%s"} 1\n' % cut in text
        assert_promtool_parses(text)
        found = samples(text)
        assert value(found, "asterisk_memcached_locks_held", node='pbx"1\\a') == 0
        assert value(found, "asterisk_memcached_server_faults", server=odd_path) == 0
        assert ("asterisk_memcached_server_up", (("server", odd_path),)) in found
    finally:
        ast.stop()
        server.stop()


def test_a_node_id_that_is_not_utf8_is_shown_with_a_replacement_character(scraped):
    require("promtool")
    pbx, server, down = scraped
    ast = pbx.ast
    # A Latin-1 byte: the text format wants UTF-8, and one bad label value fails the whole scrape.
    conf = general("server=" + server.address, "server=" + down.address, "node_id=pbx_first")
    ast.write_memcached_conf(conf)
    ast.cli("module reload res_memcached")
    ast.wait_for(lambda: 'node="pbx_first"' in (ast.scrape() or ""))
    with open(os.path.join(ast.etc, "memcached.conf"), "wb") as f:
        f.write(conf.replace("pbx_first", "pbx\udce9").encode("utf-8", "surrogateescape"))

    scraped_bytes = []

    def renamed():
        ast.cli("module reload res_memcached")
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % ast.http_port, timeout=10) as r:
            scraped_bytes.append(r.read())
        return b'node="pbx_first"' not in scraped_bytes[-1]

    ast.wait_for(renamed)
    text = scraped_bytes[-1].decode("utf-8")
    assert 'asterisk_memcached_group_members{node="pbx\ufffd"} 0\n' in text
    assert_promtool_parses(text)


def test_pooled_handles_are_named_as_such(scraped):
    pbx, _, _ = scraped
    assert pbx.app("mcdset(k,v)")[1] == "MEMCACHED_SUCCESS"
    text = pbx.ast.scrape()
    found = samples(text)
    assert value(found, "asterisk_memcached_pool_handles_in_use", pool="calls") == 0
    assert value(found, "asterisk_memcached_pool_handles_peak", pool="calls") == 1
    assert value(found, "asterisk_memcached_pool_size", pool="calls") == 64
    assert "asterisk_memcached_connections_" not in text


def histogram_faults(text):
    """What is wrong with the histogram in a scrape: per operation, buckets that decrease as le
    grows, or a +Inf bucket that differs from _count."""
    found = samples(text)
    faults = []
    for operation in sorted({dict(labels)["operation"] for (name, labels) in found
                             if name == "asterisk_memcached_operation_seconds_count"}):
        buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in found.items()
                         if name == "asterisk_memcached_operation_seconds_bucket"
                         and dict(labels)["operation"] == operation)
        counts = [v for _, v in buckets]
        count = value(found, "asterisk_memcached_operation_seconds_count", operation=operation)
        if len(buckets) != 15 or buckets[-1][0] != float("inf"):
            faults.append("%s: buckets %r" % (operation, buckets))
        elif counts != sorted(counts) or counts[-1] != count:
            faults.append("%s: buckets %r, count %d" % (operation, buckets, count))
    return faults


SCRAPES_UNDER_LOAD = 1000


def test_every_scrape_under_load_holds_a_consistent_histogram(scraped, figures):
    pbx, _, _ = scraped
    ast = pbx.ast
    # Channels that read and write until they are hung up, while two threads scrape.
    ast.cli("dialplan set global READS 100000000")
    ast.cli("dialplan set global FILL_N 100000000")
    ast.cli("dialplan set global FILL_PREFIX load_")
    for n in range(6):
        ast.cli("channel originate Local/reads-%d@tests application Wait 0" % n)
    for _ in range(2):
        ast.cli("channel originate Local/fill@tests application Wait 0")
    checked, faults, lock = [0], [], threading.Lock()
    deadline = time.monotonic() + 600

    def scraper():
        while time.monotonic() < deadline:
            with lock:
                if checked[0] >= SCRAPES_UNDER_LOAD:
                    return
            found = histogram_faults(ast.scrape() or "")
            with lock:
                checked[0] += 1
                faults.extend(found)

    threads = [threading.Thread(target=scraper) for _ in range(2)]
    started = samples(ast.scrape())
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished = samples(ast.scrape())
    ast.cli("channel request hangup all")
    made = sum(value(finished, "asterisk_memcached_operation_seconds_count", operation=op)
               - value(started, "asterisk_memcached_operation_seconds_count", operation=op)
               for op in ("get", "set"))
    figures("metrics: %d scrapes under %d operations made meanwhile, %d inconsistent histograms"
            % (checked[0], made, len(faults)))
    assert checked[0] >= SCRAPES_UNDER_LOAD
    assert made > 0
    assert faults == [], faults[:5]
