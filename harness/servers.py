"""The memcached side of the tests, the benchmark and the demo, each started
from Debian's packages on loopback (or a unix socket in a folder of its own)
and stopped by its own process id:

  Memcached         a memcached on a free 127.0.0.1 port, or on a unix socket
  HungServer        a port that accepts connections and never answers
  MemcachedProxy    memcached's built-in proxy (routelib) in front of backends
  Twemproxy         twemproxy (Debian's nutcracker) in front of backends
  TlsMemcached      a memcached that serves TLS only (-Z), with a fresh
                    self-signed certificate
  Stunnel           stunnel in client mode: plain text in (a port or a unix
                    socket), TLS out to a TlsMemcached
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

from harness.ports import free_port, wait_listening


def tool_missing(name):
    """Why a tool the fleet tests need is missing here, or None. Debian sid has them
    all; the Asterisk 16 root (bullseye) lacks memcached's proxy and TLS."""
    if name in ("memcached-proxy", "memcached-tls"):
        help_text = subprocess.run(["memcached", "-h"], capture_output=True, text=True).stdout
        needed = "proxy_config" if name == "memcached-proxy" else "enable-ssl"
        return None if needed in help_text else "this memcached is built without %s" % needed
    return None if shutil.which(name) else "%s is not installed" % name


class _Process:
    """A server process of ours, with a scratch folder; stop() ends both."""

    def _start(self, args, env=None):
        self.dir = getattr(self, "dir", None) or tempfile.mkdtemp(prefix="mcd-")
        os.chmod(self.dir, 0o1777)  # memcached drops to nobody before it makes its socket
        self.log = open(os.path.join(self.dir, "output.txt"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **(env or {})))

    def _wait(self, what):
        if not wait_listening(self.port):
            output = self._output()
            self.stop()
            raise RuntimeError("%s did not start on port %d: %s" % (what, self.port, output))

    def _output(self):
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return f.read()[-2000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Memcached(_Process):
    """A memcached on 127.0.0.1 at a free port, or with unix_socket=True on a unix socket."""

    def __init__(self, extra_args=(), port=None, env=None, unix_socket=False):
        self.socket_path = None
        if unix_socket:
            self.dir = tempfile.mkdtemp(prefix="mcd-")
            self.socket_path = os.path.join(self.dir, "memcached.sock")
            self.port = None
            self._start(["memcached", "-u", "nobody", "-s", self.socket_path, "-a", "0666",
                         *extra_args], env)
            deadline = time.monotonic() + 10
            while not os.path.exists(self.socket_path) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not os.path.exists(self.socket_path):
                self.stop()
                raise RuntimeError("memcached made no socket at %s" % self.socket_path)
            return
        self.port = port or free_port()
        self._start(["memcached", "-u", "nobody", "-l", "127.0.0.1", "-p", str(self.port), "-U", "0",
                     *extra_args], env)
        self._wait("memcached")

    @property
    def address(self):
        """As written in memcached.conf's server=."""
        return self.socket_path or "127.0.0.1:%d" % self.port

    @property
    def client_address(self):
        """As pymemcache takes it: (host, port), or the socket's path."""
        return self.socket_path or ("127.0.0.1", self.port)


class HungServer:
    """A hung memcached: the kernel completes TCP connections to it, but nothing
    ever reads a request or sends a reply."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        self.sock.close()


class MemcachedProxy(_Process):
    """memcached's built-in proxy with its route library: every key to the pool of backends."""

    def __init__(self, backends):
        self.dir = tempfile.mkdtemp(prefix="mcd-")
        routes = os.path.join(self.dir, "routes.lua")
        with open(routes, "w") as f:
            f.write("pools{ main = { backends = { %s } } }\n"
                    "routes{ default = route_direct{ child = \"main\" } }\n"
                    % ", ".join('"%s"' % b.address for b in backends))
        self.port = free_port()
        self._start(["memcached", "-u", "nobody", "-l", "127.0.0.1", "-p", str(self.port), "-U", "0",
                     "-o", "proxy_config=routelib,proxy_arg=" + routes])
        self._wait("memcached's proxy")

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port


class Twemproxy(_Process):
    """twemproxy (nutcracker), its statistics port on loopback too. Its keys are hashed
    with md5: with fnv1a_64, twemproxy 0.5's ketama sends every key to one server."""

    def __init__(self, backends):
        self.dir = tempfile.mkdtemp(prefix="mcd-")
        self.port = free_port()
        conf = os.path.join(self.dir, "nutcracker.yml")
        with open(conf, "w") as f:
            f.write("pool:\n  listen: 127.0.0.1:%d\n  hash: md5\n  distribution: ketama\n"
                    "  timeout: 1000\n  redis: false\n  auto_eject_hosts: false\n  servers:\n%s"
                    % (self.port, "".join("   - %s:1\n" % b.address for b in backends)))
        self._start(["nutcracker", "-c", conf, "-s", str(free_port()), "-a", "127.0.0.1",
                     "-p", os.path.join(self.dir, "nutcracker.pid")])
        self._wait("twemproxy")

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port


class TlsMemcached(_Process):
    """A memcached that speaks TLS only, with a self-signed certificate for 127.0.0.1."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mcd-")
        os.chmod(self.dir, 0o755)
        self.cert = os.path.join(self.dir, "cert.pem")
        key = os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", self.cert],
                       check=True, capture_output=True)
        os.chmod(key, 0o644)  # memcached reads it as nobody
        self.port = free_port()
        self._start(["memcached", "-u", "nobody", "-l", "127.0.0.1", "-p", str(self.port), "-U", "0",
                     "-Z", "-o", "ssl_chain_cert=%s,ssl_key=%s" % (self.cert, key)])
        self._wait("memcached with TLS")

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port


class Stunnel(_Process):
    """stunnel in client mode: plain connections to a unix socket (or, with
    unix_socket=False, a loopback port) leave as TLS to server, whose certificate
    is checked against its own file."""

    def __init__(self, server, unix_socket=True):
        self.dir = tempfile.mkdtemp(prefix="mcd-")
        self.port = None if unix_socket else free_port()
        self.socket_path = os.path.join(self.dir, "memcached.sock") if unix_socket else None
        conf = os.path.join(self.dir, "stunnel.conf")
        with open(conf, "w") as f:
            f.write("foreground = yes\npid =\n\n[memcached]\nclient = yes\naccept = %s\n"
                    "connect = %s\nverifyPeer = yes\nCAfile = %s\ncheckIP = 127.0.0.1\n"
                    % (self.socket_path or "127.0.0.1:%d" % self.port, server.address, server.cert))
        self._start(["stunnel", conf])
        if unix_socket:
            deadline = time.monotonic() + 10
            while not os.path.exists(self.socket_path) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not os.path.exists(self.socket_path):
                output = self._output()
                self.stop()
                raise RuntimeError("stunnel made no socket: %s" % output)
        else:
            self._wait("stunnel")

    @property
    def address(self):
        return self.socket_path or "127.0.0.1:%d" % self.port
