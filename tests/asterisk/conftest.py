"""Fixtures: real memcached servers, a real Asterisk, an independent client."""

import glob
import os
import re
import socket
import time
import urllib.parse

import pytest
from pymemcache.client.base import Client

from harness.pbx import Asterisk
from harness.servers import HungServer, Memcached, tool_missing

HERE = os.path.dirname(os.path.abspath(__file__))

PREFIX = "t_"

# The module's source files, as Asterisk names them in its log lines ("src/glue/report.c: ..."):
# the paths the Makefile compiled them by.
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MODULE_SOURCES = sorted(os.path.relpath(path, ROOT) for path in glob.glob(
    os.path.join(ROOT, "src", "**", "*.c"), recursive=True))


def pytest_configure(config):
    config.addinivalue_line("markers", "long: seconds of load or waiting on code that does not depend "
                            "on Asterisk's version; the Asterisk 16 run leaves these out")


def module_log_lines(text):
    """The lines of a log written by the module's own code."""
    return [line for line in text.splitlines()
            if any(" %s:" % source in line for source in MODULE_SOURCES)]


def read_file(name):
    with open(os.path.join(HERE, name)) as f:
        return f.read()


def general(*lines):
    return "[general]\n" + "".join(line + "\n" for line in lines)


class Pbx:
    """A running Asterisk plus the helpers the tests call it through."""

    def __init__(self, asterisk):
        self.ast = asterisk

        self.dirty = False
        self.token = 0
        self.elapsed = None

    def _probe(self, exten, code, ttl, limit=30.0, after=None):
        """Run code on a fresh Local channel at exten@tests: (OUT, MCDRESULT)."""
        self.token += 1
        token = str(self.token)
        encode = lambda v: urllib.parse.quote(str(v), safe="")  # noqa: E731
        parts = [token, "-" if ttl is None else encode(ttl), encode(code)]
        if after is not None:
            parts.append(encode(after))
        request = ",".join(parts)
        # The console cuts commands at about 500 bytes: "steps" takes its request in parts.
        if exten == "steps":
            chunks = [request[i:i + 400] for i in range(0, len(request), 400)]
            for n, chunk in enumerate(chunks):
                self.ast.cli("dialplan set global IN_%d %s" % (n, chunk))
            self.ast.cli("dialplan set global IN_PARTS %d" % len(chunks))
        else:
            assert len(request) < 450, "request too long for the console: use steps()"
            self.ast.cli("dialplan set global IN " + request)
        self.ast.cli("channel originate Local/%s@tests application Wait 0" % exten)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            reply = self.ast.globals().get("REPLY", "")
            if reply.startswith(token + ","):
                _, result, seconds, out = reply.split(",", 3)
                # Seconds the call spent in the memcached step, as the channel measured it.
                self.elapsed = float(seconds)
                return urllib.parse.unquote(out), result
            time.sleep(0.01)
        raise AssertionError("%s@tests did not answer %r within %d s" % (exten, code, limit))

    def fn(self, expression, ttl=None):
        """Evaluate a dialplan expression on a channel: (value, MCDRESULT)."""
        return self._probe("fn", expression, ttl)

    def app(self, call, ttl=None):
        """Run an application call on a channel: (${GOT}, MCDRESULT)."""
        return self._probe("app", call, ttl)

    def steps(self, calls, after):
        """Run application calls in turn on one channel, then evaluate the expression
        after: (its value, the MCDRESULT the last call left)."""
        return self._probe("steps", "^".join(calls), None, after=after)

    def length_of(self, key):
        """LEN(${MCD(key)}) without EVAL, whose fixed buffer would cut values at 4 KiB."""
        return self._probe("length", key, None)

    def reload(self, memcached_conf):
        self.dirty = True
        self.ast.write_memcached_conf(memcached_conf)
        return self.ast.cli("module reload res_memcached")

    def log_mark(self):
        return len(self.ast.log())

    def log_since(self, mark):
        return self.ast.log()[mark:]


@pytest.fixture(scope="session")
def figures():
    """Record a measured figure: printed at the end of the run, never asserted on."""
    path = os.environ.get("MCD_FIGURES")

    def record(text):
        if path:
            with open(path, "a") as f:
                f.write(text + "\n")
        else:
            print("FIGURE: " + text)

    return record


@pytest.fixture(scope="session")
def memcached():
    server = Memcached()
    yield server
    server.stop()


@pytest.fixture(params=["binary", "text"])
def protocol(request):
    return request.param


@pytest.fixture(scope="session")
def pbx_by_protocol(memcached):
    """One Asterisk per protocol, started on first use, stopped at the end."""
    started = {}

    def get(protocol):
        if protocol not in started:
            conf = general("server=" + memcached.address, "prefixkey=" + PREFIX,
                           "binary_proto=" + ("yes" if protocol == "binary" else "no"))
            started[protocol] = (Pbx(Asterisk(read_file("extensions.conf"), conf)), conf)
        return started[protocol]

    yield get
    for pbx, _ in started.values():
        pbx.ast.stop()


@pytest.fixture
def pbx(pbx_by_protocol, protocol):
    """The Asterisk of the protocol under test, with its memcached.conf as it started."""
    pbx, conf = pbx_by_protocol(protocol)
    yield pbx
    if pbx.dirty:
        # A test that reloaded another configuration hands the next one the original.
        pbx.reload(conf)
        pbx.dirty = False


@pytest.fixture
def start_pbx():
    """Start Asterisk instances of a test's own, with the given memcached.conf."""
    started = []

    def start(conf):
        ast = Asterisk(read_file("extensions.conf"), conf)
        started.append(ast)
        return Pbx(ast)

    yield start
    for ast in started:
        ast.stop()


@pytest.fixture
def hung():
    """A hung memcached of a test's own: connections complete, nothing is ever answered."""
    server = HungServer()
    yield server
    server.stop()


@pytest.fixture
def cluster():
    """Three memcached servers of a test's own."""
    servers = [Memcached() for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()


def cluster_conf(servers, *lines):
    return general(*["server=" + s.address for s in servers], "prefixkey=" + PREFIX, *lines)


@pytest.fixture
def mc(memcached):
    """An independent client on the same memcached: another application's view."""
    client = Client(("127.0.0.1", memcached.port), connect_timeout=2, timeout=2)
    yield client
    client.close()


@pytest.fixture
def key(request):
    """A key no other test uses."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:120]
    return "%s_%d" % (name, time.monotonic_ns())


def stats(where):
    """memcached's own "stats" of the server at where (a port, or a unix socket's path)."""
    family, address = ((socket.AF_UNIX, where) if isinstance(where, str)
                       else (socket.AF_INET, ("127.0.0.1", where)))
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(address)
        s.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            data += s.recv(65536)
    return {line.split()[1]: line.split()[2] for line in data.decode().splitlines()
            if line.startswith("STAT ")}


def connections_to(pid, port):
    """Established TCP connections that process pid holds to 127.0.0.1:port."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if remote_port == port and fields[3] == "01":
                inodes.add(fields[9])
    held = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held += 1
    return held


def require(tool):
    """Fail when a tool of Debian sid's root is missing; in a root that lacks it on
    purpose (MCD_OPTIONAL_TOOLS, the Asterisk 16 root), skip instead."""
    missing = tool_missing(tool)
    if missing and os.environ.get("MCD_OPTIONAL_TOOLS"):
        pytest.skip(missing)
    assert not missing, missing


def meta_ttl(port, full_key):
    """The remaining ttl memcached reports for a key (-1: never expires), via meta get."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"mg " + full_key.encode() + b" t\r\n")
        reply = s.recv(4096).decode()
    # "HD t123" or "EN" for a miss
    for token in reply.split()[1:]:
        if token.startswith("t"):
            return int(token[1:])
    raise AssertionError("no ttl in %r" % reply)


def memcached_keys(port):
    """Every key the memcached at port holds, from its LRU crawler (keys come URL-encoded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"lru_crawler metadump all\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            data += s.recv(65536)
    return [urllib.parse.unquote(line.split()[0][4:].decode()) for line in data.splitlines()
            if line.startswith(b"key=")]
