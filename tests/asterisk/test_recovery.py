"""Recovery from the faults of production: a memcached restarted under load or just
before a burst costs the calls made while it is down, not seconds more."""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pymemcache.client.base import Client

from conftest import general
from harness.servers import Memcached

PREFIX = ""


def answers(address):
    try:
        client = Client(address, connect_timeout=0.5, timeout=0.5)
        client.version()
        client.close()
        return True
    except Exception:
        return False


@pytest.mark.long
def test_restart_under_busy_channels_fails_no_call_after_memcached_answers(start_pbx, figures):
    server = Memcached()
    port = server.port
    channels = 16
    try:
        pbx = start_pbx(general("server=" + server.address))
        ast = pbx.ast
        ast.cli("dialplan set global WRITERS_STOP 0")
        for n in range(channels):
            ast.cli("channel originate Local/writer-%d@tests application Wait 60" % n)
        # Every writer has written: their pooled connections are open.
        client = Client(server.client_address)
        ast.wait_for(lambda: all(client.get("writer_%d" % n) for n in range(channels)))
        client.close()
        time.sleep(0.5)
        server.stop()
        time.sleep(0.3)
        server = Memcached(port=port)
        ast.wait_for(lambda: answers(server.client_address), limit=10)
        back = time.time()
        time.sleep(2.0)
        ast.cli("dialplan set global WRITERS_STOP 1")
        ast.wait_for(lambda: all(ast.global_var("WDONE_%d" % n) for n in range(channels)))
        made = sum(int(ast.global_var("WDONE_%d" % n)) for n in range(channels))
        failed = sum(int(ast.global_var("WFAILS_%d" % n)) for n in range(channels))
        last = [ast.global_var("WLAST_%d" % n).split("/") for n in range(channels)]
        # Every writer saw memcached down, and none failed once it had been back 0.5 s.
        assert all(result for _, result in last), last
        late = [(round(float(when) - back, 3), result) for when, result in last
                if float(when) > back + 0.5]
        assert late == []
        figures("memcached restarted under %d channels writing every 20 ms (%d writes): %d failed; "
                "the last failure %.3f s after memcached answered again"
                % (channels, made, failed, max(float(when) for when, _ in last) - back))
    finally:
        server.stop()


def test_locked_increments_right_after_a_restart_are_exact(start_pbx, figures):
    server = Memcached()
    port = server.port
    try:
        pbx = start_pbx(general("server=" + server.address, "pool_size=48"))
        ast = pbx.ast
        client = Client(server.client_address)
        # 40 channels at once open 40 pooled connections, left idle.
        for n in range(40):
            ast.cli("channel originate Local/bump@tests application Wait 0")
        ast.wait_for(lambda: client.get("concurrent_done") == b"40")
        client.close()
        server.stop()
        server = Memcached(port=port)
        client = Client(server.client_address)
        client.set("locked_value", "0")
        client.set("lock_failures", "")
        client.set("lock_done", "")
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda n: ast.cli("channel originate Local/locked-increments@tests "
                                            "application Wait 0"), range(40)))
        ast.wait_for(lambda: len(client.get("lock_done") or b"") == 40, limit=120)
        assert client.get("lock_failures") == b""
        assert client.get("locked_value") == b"800"
        figures("memcached restarted with 40 idle pooled connections, then 40 channels x 20 "
                "locked increments: value 800 exact, no failure, in %.1f s" % (time.monotonic() - started))
        client.close()
    finally:
        server.stop()


def test_a_write_right_after_a_quiet_restart_succeeds(start_pbx):
    server = Memcached()
    port = server.port
    try:
        pbx = start_pbx(general("server=" + server.address))
        assert pbx.app("mcdset(quiet,before)")[1] == "MEMCACHED_SUCCESS"
        assert pbx.fn("${MCDCOUNTER(quiet_n,1)}") == ("1", "MEMCACHED_SUCCESS")
        # memcached restarts while no call runs: the pooled connections are closed under
        # the module, and no call has noticed.
        server.stop()
        server = Memcached(port=port)
        time.sleep(1.2)
        assert pbx.app("mcdset(quiet,after)")[1] == "MEMCACHED_SUCCESS"
        assert pbx.fn("${MCDCOUNTER(quiet_n,1)}") == ("1", "MEMCACHED_SUCCESS")
        assert Client(server.client_address).get("quiet") == b"after"
    finally:
        server.stop()


class OddVersionServer:
    """A text-protocol server whose version line is not a number (as mcrouter's is):
    it stores and reads plain values, and can be stopped and started on its port."""

    def __init__(self, port=None):
        import socket
        import threading
        self.values = {}
        self.conns = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port or 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def _accept(self):
        import threading
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        data = b""
        try:
            while self.running:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
                while b"\r\n" in data:
                    line, rest = data.split(b"\r\n", 1)
                    words = line.split()
                    if words and words[0] == b"set":
                        size = int(words[4])
                        if len(rest) < size + 2:
                            break
                        self.values[words[1]] = rest[:size]
                        data = rest[size + 2:]
                        conn.sendall(b"STORED\r\n")
                        continue
                    data = rest
                    if words[:1] == [b"version"]:
                        conn.sendall(b"VERSION mcrouter 41.0.0\r\n")
                    elif words[:1] == [b"get"]:
                        out = b""
                        for key in words[1:]:
                            if key in self.values:
                                v = self.values[key]
                                out += b"VALUE %s 0 %d\r\n%s\r\n" % (key, len(v), v)
                        conn.sendall(out + b"END\r\n")
                    else:
                        conn.sendall(b"ERROR\r\n")
        except OSError:
            return
        finally:
            conn.close()

    def stop(self):
        import socket
        self.running = False
        self.sock.close()
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_a_proxy_whose_version_is_not_a_number_is_used_again_after_a_blip(start_pbx):
    proxy = OddVersionServer()
    port = proxy.port
    try:
        pbx = start_pbx(general("server=" + proxy.address, "server_failure_limit=2", "retry_timeout=60"))
        assert pbx.app("mcdset(odd,v)")[1] == "MEMCACHED_SUCCESS"
        proxy.stop()
        pbx.ast.wait_for(lambda: pbx.fn("${MCD(odd)}")[1] == "MEMCACHED_SERVER_TEMPORARILY_DISABLED")
        proxy = OddVersionServer(port=port)
        # Its reply to the prober's version is no number, but a reply: used again long
        # before retry_timeout (60 s).
        pbx.ast.wait_for(lambda: pbx.app("mcdset(odd,back)")[1] == "MEMCACHED_SUCCESS", limit=10)
    finally:
        proxy.stop()


def test_a_brief_stall_is_not_taken_for_the_other_protocol(start_pbx):
    server = Memcached()
    try:
        pbx = start_pbx(general("server=" + server.address, "timeout=200", "server_failure_limit=2",
                                "retry_timeout=60"))
        assert pbx.app("mcdset(stall,v)")[1] == "MEMCACHED_SUCCESS"
        mark = pbx.log_mark()
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            assert [pbx.fn("${MCD(stall)}")[1] for _ in range(2)] == ["MEMCACHED_TIMEOUT"] * 2
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        pbx.ast.wait_for(lambda: pbx.fn("${MCD(stall)}") == ("v", "MEMCACHED_SUCCESS"), limit=10)
        assert "does not answer the" not in pbx.log_since(mark)
        assert "wrong protocol" not in pbx.ast.cli("memcached show servers")
    finally:
        server.stop()
