"""The memcached fleet as it runs today: unix sockets, weights, memcached's own
proxy and twemproxy in front of two backends each, TLS through a stunnel
tunnel, a server of the wrong protocol named as such, and the connections an
Asterisk opens at peak. Every proxy, tunnel and server comes from Debian's
packages and listens on loopback or a unix socket of the test's own."""

import re
import ssl
import time

import pytest
from pymemcache.client.base import Client

from conftest import PREFIX, connections_to, general, require, stats
from harness.ami import Ami
from harness.pbx import Asterisk
from harness.servers import Memcached, MemcachedProxy, Stunnel, TlsMemcached, Twemproxy


def fill(pbx, prefix, count):
    """Write count values under prefix0, prefix1, ... in one dialplan loop; all must store."""
    pbx.ast.cli("dialplan set global FILL_N %d" % count)
    pbx.ast.cli("dialplan set global FILL_PREFIX " + prefix)
    pbx.ast.cli("dialplan set global FILL_DONE -")
    pbx.ast.cli("channel originate Local/fill@tests application Wait 0")
    pbx.ast.wait_for(lambda: pbx.ast.global_var("FILL_DONE") != "-", limit=60)
    assert pbx.ast.global_var("FILL_DONE") == str(count)


def held_by(servers, prefix, count):
    """How many of the keys prefix0.. each server holds, read by an independent client."""
    keys = [PREFIX + prefix + str(i) for i in range(count)]
    return [len(Client(s.client_address).get_many(keys)) for s in servers]


@pytest.fixture
def backends():
    servers = [Memcached(), Memcached()]
    yield servers
    for server in servers:
        server.stop()


# --- unix sockets and weights ---

def test_a_unix_socket_server_alone_and_beside_a_tcp_one(start_pbx, key):
    sock, tcp = Memcached(unix_socket=True), Memcached()
    try:
        pbx = start_pbx(general("server=" + sock.address, "prefixkey=" + PREFIX))
        assert pbx.app("mcdset(%s,over a socket)" % key)[1] == "MEMCACHED_SUCCESS"
        assert Client(sock.socket_path).get(PREFIX + key) == b"over a socket"
        assert pbx.fn("${MCDCOUNTER(%s_n,3)}" % key) == ("3", "MEMCACHED_SUCCESS")
        line = [l for l in pbx.ast.cli("memcached show servers").splitlines()
                if l.startswith(sock.address)]
        assert len(line) == 1 and line[0].split()[1] == "up", line
        # The same Asterisk, both servers: keys spread over the socket and the port.
        pbx.reload(general("server=" + sock.address, "server=" + tcp.address, "prefixkey=" + PREFIX))
        fill(pbx, "mixed", 40)
        held = held_by([sock, tcp], "mixed", 40)
        assert sum(held) == 40 and min(held) > 0, held
    finally:
        sock.stop()
        tcp.stop()


def test_weights_give_a_server_its_share_of_the_keys(start_pbx, backends, figures):
    small, big = backends
    pbx = start_pbx(general("server=" + small.address, "server=%s,weight=3" % big.address,
                            "distribution=consistent", "prefixkey=" + PREFIX))
    assert "server                 %s,weight=3" % big.address in pbx.ast.cli("memcached show settings")
    fill(pbx, "w3_", 400)
    first = held_by(backends, "w3_", 400)
    # The weight moved to the other server: the share follows it.
    pbx.reload(general("server=%s,weight=3" % small.address, "server=" + big.address,
                       "distribution=consistent", "prefixkey=" + PREFIX))
    fill(pbx, "w1_", 400)
    second = held_by(backends, "w1_", 400)
    assert sum(first) == sum(second) == 400
    # Weights 1:3 give 3/4 of the keys to the heavier server, within ketama's spread.
    assert 0.65 <= first[1] / 400 <= 0.85, first
    assert 0.65 <= second[0] / 400 <= 0.85, second
    figures("weights 1:3 (consistent): the heavier server held %d and then %d of 400 keys"
            % (first[1], second[0]))


def test_weights_without_consistent_distribution_are_refused(start_pbx, backends):
    pbx = start_pbx(general("server=%s,weight=2" % backends[0].address, "server=" + backends[1].address))
    assert "memcached.conf: server weights need distribution=consistent" in pbx.ast.log()


# --- proxies ---

@pytest.fixture(params=["memcached-proxy", "twemproxy"])
def proxied(request, backends):
    """A proxy of each kind in front of two backends."""
    require("memcached-proxy" if request.param == "memcached-proxy" else "nutcracker")
    proxy = (MemcachedProxy if request.param == "memcached-proxy" else Twemproxy)(backends)
    yield request.param, proxy
    proxy.stop()


def test_every_function_and_application_works_through_a_proxy(start_pbx, proxied, backends, key):
    kind, proxy = proxied
    pbx = start_pbx(general("server=" + proxy.address, "prefixkey=" + PREFIX))
    assert pbx.app("Set(MCD(%s)=v)" % key)[1] == "MEMCACHED_SUCCESS"
    assert pbx.fn("${MCD(%s)}" % key) == ("v", "MEMCACHED_SUCCESS")
    assert pbx.app("mcdadd(%s,x)" % key)[1] == "MEMCACHED_DATA_EXISTS"
    assert pbx.app("mcdreplace(%s_missing,x)" % key)[1] == "MEMCACHED_NOTFOUND"
    assert pbx.app("mcdappend(%s,+)" % key)[1] == "MEMCACHED_SUCCESS"
    assert pbx.app("mcdprepend(%s,-)" % key)[1] == "MEMCACHED_SUCCESS"
    assert pbx.app("mcdget(GOT,%s)" % key) == ("-v+", "MEMCACHED_SUCCESS")
    assert pbx.app("mcdtouch(%s,100)" % key)[1] == "MEMCACHED_SUCCESS"
    assert pbx.fn("${MCDCOUNTER(%s_n,5)}" % key) == ("5", "MEMCACHED_SUCCESS")
    assert pbx.fn("${MCDCOUNTER(%s_n,-2)}" % key) == ("3", "MEMCACHED_SUCCESS")
    assert pbx.app("Set(MCDCOUNTER(%s_n)=10)" % key)[1] == "MEMCACHED_SUCCESS"
    assert pbx.steps(["Set(MCDNOREPLY=yes)", "mcdset(%s_nr,sent)" % key], "") == ("", "MEMCACHED_SENT")
    # What the module wrote is on a backend, as another client of the backends sees it.
    for name, value in ((key, b"-v+"), (key + "_n", b"10")):
        assert [Client(b.client_address).get(PREFIX + name) for b in backends].count(value) == 1
    pbx.ast.wait_for(lambda: any(Client(b.client_address).get(PREFIX + key + "_nr") == b"sent"
                                 for b in backends), limit=10)
    assert pbx.steps(["mcdmget(A=%s,B=%s_n,C=%s_missing)" % (key, key, key)],
                     "${A}/${B}/${C}/${MCDRESULT_A}/${MCDRESULT_C}") \
        == ("-v+/10//MEMCACHED_SUCCESS/MEMCACHED_NOTFOUND", "MEMCACHED_NOTFOUND")
    assert pbx.app("mcddelete(%s)" % key)[1] == "MEMCACHED_SUCCESS"
    assert pbx.app("mcddelete(%s)" % key)[1] == "MEMCACHED_NOTFOUND"


def test_mcdmget_reads_keys_of_both_backends_through_a_proxy(start_pbx, proxied, backends):
    _, proxy = proxied
    pbx = start_pbx(general("server=" + proxy.address, "prefixkey=" + PREFIX))
    fill(pbx, "spread", 12)
    held = held_by(backends, "spread", 12)
    assert sum(held) == 12 and min(held) > 0, held
    calls = ",".join("V%d=spread%d" % (i, i) for i in range(12))
    assert pbx.steps(["mcdmget(%s)" % calls], "${V0}${V5}${V11}") == ("0511", "MEMCACHED_SUCCESS")


def test_console_and_manager_through_a_proxy(proxied, backends, key):
    kind, proxy = proxied
    from conftest import read_file
    ast = Asterisk(read_file("extensions.conf"), general("server=" + proxy.address, "prefixkey=" + PREFIX),
                   ami=True)
    try:
        assert ast.cli("memcached set %s hello" % key) == "MEMCACHED_SUCCESS\n"
        assert ast.cli("memcached get %s" % key) == "hello\nMEMCACHED_SUCCESS\n"
        assert ast.cli("memcached add %s again" % key) == "MEMCACHED_DATA_EXISTS\n"
        assert ast.cli("memcached incr %s_n 4" % key) == "4\nMEMCACHED_SUCCESS\n"
        assert ast.cli("memcached delete %s" % key) == "MEMCACHED_SUCCESS\n"
        ami = Ami(ast.ami_port, Asterisk.AMI_USER, Asterisk.AMI_SECRET)
        try:
            assert ami.action("MemcachedSet", Key=key, Value="from ami")[0]["Result"] == "MEMCACHED_SUCCESS"
            assert ami.action("MemcachedGet", Key=key)[0]["Value"] == "from ami"
            assert ami.action("MemcachedIncrement", Key=key + "_n")[0]["Value"] == "5"
            assert ami.action("MemcachedDelete", Key=key)[0]["Result"] == "MEMCACHED_SUCCESS"
            server = [m for m in ami.action("MemcachedStatus") if m.get("Event") == "MemcachedServer"]
            assert [(s["State"], s["Kind"]) for s in server] == [
                ("up", "memcached proxy" if kind == "memcached-proxy" else "no stats (a proxy)")]
        finally:
            ami.close()
        # show servers says what answers there, not a proxy's own (empty) figures as the cluster's.
        line = [l for l in ast.cli("memcached show servers").splitlines() if l.startswith(proxy.address)][0]
        if kind == "memcached-proxy":
            assert re.search(r" up +[\d.]+ +- +\d+ +- +-  memcached proxy$", line), line
        else:
            assert re.search(r" up +- +- +- +- +-  no stats \(a proxy\)$", line), line
        # Neither proxy passes flush_all on: the result says so, and nothing is dropped.
        Client(backends[0].client_address).set("kept", b"1")
        assert ast.cli("memcached flush") == "MEMCACHED_SOME_ERRORS\n"
        assert Client(backends[0].client_address).get("kept") == b"1"
    finally:
        ast.stop()


# --- the wrong protocol, named ---

def test_binary_in_front_of_a_proxy_is_named_once(start_pbx, backends, figures):
    require("memcached-proxy")
    proxy = MemcachedProxy(backends)
    try:
        pbx = start_pbx(general("server=" + proxy.address, "binary_proto=yes", "timeout=200",
                                "connect_timeout=200", "retry_timeout=1"))
        mark = pbx.log_mark()
        results = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(results) < 2:
            results.add(pbx.fn("${MCD(k)}")[1])
        # Every call fails in time (never hangs), first on the wire, then at once while it rests.
        assert "MEMCACHED_SERVER_TEMPORARILY_DISABLED" in results, results
        pbx.ast.wait_for(lambda: "does not answer the binary protocol" in pbx.log_since(mark), limit=10)
        # Past the rest period the server is tried again, fails again and rests again:
        # it was named once, and is not probed nor named again.
        pbx.ast.wait_for(lambda: pbx.fn("${MCD(k)}")[1] != "MEMCACHED_SERVER_TEMPORARILY_DISABLED")
        for _ in range(5):
            pbx.fn("${MCD(k)}")
        named = [l for l in pbx.log_since(mark).splitlines() if "does not answer the binary protocol" in l]
        assert len(named) == 1, named
        assert proxy.address in named[0] and "Set binary_proto=no" in named[0]
        line = [l for l in pbx.ast.cli("memcached show servers").splitlines() if l.startswith(proxy.address)]
        assert "wrong protocol" in line[0], line
        figures("binary_proto=yes in front of memcached's proxy: calls got %s; the log named the "
                "server once, with what to set" % ", ".join(sorted(results)))
    finally:
        proxy.stop()


def test_text_in_front_of_a_binary_only_memcached_is_named(start_pbx):
    server = Memcached(extra_args=["-B", "binary"])
    try:
        pbx = start_pbx(general("server=" + server.address, "timeout=200", "connect_timeout=200"))
        mark = pbx.log_mark()
        pbx.ast.wait_for(lambda: pbx.fn("${MCD(k)}")[1] == "MEMCACHED_SERVER_TEMPORARILY_DISABLED")
        # The prober asks it in the other protocol, off the call path.
        pbx.ast.wait_for(lambda: "does not answer the text protocol" in pbx.log_since(mark), limit=10)
        named = [l for l in pbx.log_since(mark).splitlines() if "does not answer the text protocol" in l]
        assert len(named) == 1 and "Set binary_proto=yes" in named[0], named
        # Told what to do, the administrator reloads: it works.
        pbx.reload(general("server=" + server.address, "binary_proto=yes"))
        assert pbx.app("mcdset(k,v)")[1] == "MEMCACHED_SUCCESS"
    finally:
        server.stop()


# --- TLS through a tunnel ---

def test_tls_through_stunnel_and_memcached_refuses_plain_text(start_pbx, key, figures):
    require("memcached-tls")
    require("stunnel")
    server = TlsMemcached()
    tunnel = Stunnel(server)
    try:
        # memcached itself talks TLS only: a plain client gets nothing stored.
        with pytest.raises(Exception):
            Client(("127.0.0.1", server.port), connect_timeout=2, timeout=2).set("plain", b"x",
                                                                                noreply=False)
        pbx = start_pbx(general("server=" + tunnel.address, "prefixkey=" + PREFIX))
        assert pbx.app("mcdset(%s,secret)" % key)[1] == "MEMCACHED_SUCCESS"
        assert pbx.fn("${MCD(%s)}" % key) == ("secret", "MEMCACHED_SUCCESS")
        assert pbx.fn("${MCDCOUNTER(%s_n,2)}" % key) == ("2", "MEMCACHED_SUCCESS")
        # Another application, talking TLS itself and checking the certificate, reads it.
        tls = ssl.create_default_context(cafile=server.cert)
        client = Client(("127.0.0.1", server.port), tls_context=tls, connect_timeout=2, timeout=2)
        assert client.get(PREFIX + key) == b"secret"
        assert client.get("plain") is None
        figures("TLS: the module through stunnel (unix socket) to memcached -Z; a plain client "
                "was refused, a TLS client read what the module wrote")
    finally:
        tunnel.stop()
        server.stop()


# --- connections at peak ---

@pytest.mark.parametrize("pool_size", [8, 64])
def test_connections_at_peak_are_the_calls_at_once_within_pool_size(start_pbx, pool_size, figures):
    server = Memcached()
    try:
        pbx = start_pbx(general("server=" + server.address, "pool_size=%d" % pool_size, "pool_wait=5"))
        Client(server.client_address).set("read_me", b"x")
        channels, reads = 32, 200
        pbx.ast.cli("dialplan set global READS %d" % reads)
        for n in range(channels):
            pbx.ast.cli("channel originate Local/reads-%d@tests application Wait 0" % n)
        pbx.ast.wait_for(lambda: all("READS_%d" % n in pbx.ast.globals() for n in range(channels)),
                         limit=120)
        found = pbx.ast.globals()
        assert [found["READS_%d" % n] for n in range(channels)] == [str(reads)] * channels
        pools = pbx.ast.cli("memcached show servers")
        peak = int(re.search(r"calls +\d+ in use, peak (\d+) of %d" % pool_size, pools).group(1))
        held = connections_to(pbx.ast.proc.pid, server.port)
        # One connection per handle the pool made, and never more than pool_size.
        assert 1 <= held == peak <= pool_size, (held, peak)
        figures("connections at peak: %d channels x %d reads with pool_size=%d: %d calls at once at "
                "most, %d connections held to the server" % (channels, reads, pool_size, peak, held))
    finally:
        server.stop()
