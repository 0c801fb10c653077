"""A private Asterisk (its own config, run, log and lib directories under one
temporary folder, no network listeners but an AMI on loopback when asked) that
loads res_memcached from Asterisk's module directory, stopped by its own
process id. The memcached servers it talks to are in harness.servers."""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from harness.ports import free_port

MODULES = [
    "pbx_config.so",      # extensions.conf
    "func_global.so",     # GLOBAL(), to hand results back to the tests
    "func_strings.so",    # LEN() and friends
    "func_logic.so",      # IF()
    "func_uri.so",        # URIDECODE(), to build keys with control characters
    "res_clioriginate.so",  # channel originate
    "app_verbose.so",     # Verbose(), Log()
    "app_exec.so",        # Exec(), ExecIf()
    "app_while.so",       # While(), EndWhile()
    "app_stack.so",       # Gosub(), Return()
    "res_memcached.so",
]


def module_dir():
    found = glob.glob("/usr/lib/*/asterisk/modules/pbx_config.so") + glob.glob(
        "/usr/lib/asterisk/modules/pbx_config.so")
    if not found:
        raise RuntimeError("no Asterisk modules found: is asterisk installed?")
    return os.path.dirname(found[0])


class Asterisk:
    """A private Asterisk running the given extensions.conf and memcached.conf."""

    AMI_USER = "tests"
    AMI_SECRET = "tests-secret"
    # A second manager user with the call class only, as a softphone panel or a CRM has.
    AMI_CALL_USER = "caller"
    AMI_CALL_SECRET = "caller-secret"

    def __init__(self, extensions, memcached_conf, modules=MODULES, wrapper=(), boot_limit=60.0,
                 ami=False, verbose_log=True, metrics=False, live_dangerously=False):
        self.dir = tempfile.mkdtemp(prefix="ast-")
        self.etc = os.path.join(self.dir, "etc")
        for sub in ("etc", "run", "log", "lib", "spool"):
            os.makedirs(os.path.join(self.dir, sub))
        self.conf = os.path.join(self.etc, "asterisk.conf")
        self._write("asterisk.conf", """[directories]
astetcdir => {d}/etc
astmoddir => {mods}
astvarlibdir => {d}/lib
astdbdir => {d}/lib
astkeydir => {d}/lib
astdatadir => /usr/share/asterisk
astagidir => {d}/lib
astspooldir => {d}/spool
astrundir => {d}/run
astlogdir => {d}/log
astsbindir => /usr/sbin
[options]
documentation_language = en_US
{dangerous}""".format(d=self.dir, mods=module_dir(),
                      # AMI and ARI may then call functions registered as escalating.
                      dangerous="live_dangerously = yes\n" if live_dangerously else ""))
        # The tests read what the dialplan did from the verbose log; a benchmark leaves it out.
        self._write("logger.conf", "[general]\n[logfiles]\nfull => notice,warning,error%s\n"
                    % (",verbose(3)" if verbose_log else ""))
        self._write("extensions.conf", extensions)
        # The manager interface (AMI) listens only when asked, on a free loopback port.
        self.ami_port = free_port() if ami else None
        self._write("manager.conf", "[general]\nenabled=%s\nport=%d\nbindaddr=127.0.0.1\n\n"
                    "[%s]\nsecret=%s\nread=system,reporting,user\nwrite=system,reporting\n\n"
                    "[%s]\nsecret=%s\nread=call\nwrite=call\n"
                    % ("yes" if ami else "no", self.ami_port or 5038, self.AMI_USER,
                       self.AMI_SECRET, self.AMI_CALL_USER, self.AMI_CALL_SECRET))
        # Asterisk's HTTP server and its Prometheus endpoint, when asked, on a free loopback port.
        self.http_port = free_port() if metrics else None
        if metrics:
            self._write("http.conf", "[general]\nenabled=yes\nbindaddr=127.0.0.1\nbindport=%d\n"
                        % self.http_port)
            self._write("prometheus.conf", "[general]\nenabled=yes\nuri=metrics\n")
            # Debian's res_prometheus links against res_pjsip (for its registration metrics).
            modules = list(modules) + ["res_pjproject.so", "res_sorcery_config.so",
                                       "res_sorcery_memory.so", "res_sorcery_astdb.so", "res_pjsip.so",
                                       "res_prometheus.so", "res_memcached_prometheus.so"]
        self._write("modules.conf", "[modules]\nautoload=no\n"
                    + "".join("load => %s\n" % m for m in modules))
        self.write_memcached_conf(memcached_conf)
        self.output = open(os.path.join(self.dir, "console.txt"), "w")
        # wrapper: a command to run Asterisk under, such as valgrind.
        self.proc = subprocess.Popen([*wrapper, "asterisk", "-C", self.conf, "-f", "-n", "-q"],
                                     stdout=self.output, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self._wait_booted(boot_limit)

    def _write(self, name, text):
        with open(os.path.join(self.etc, name), "w") as f:
            f.write(text)

    def write_memcached_conf(self, text):
        self._write("memcached.conf", text)

    def _wait_booted(self, limit=60.0):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("asterisk exited: see %s/console.txt" % self.dir)
            res = subprocess.run(["asterisk", "-C", self.conf, "-rx", "core waitfullybooted"],
                                 capture_output=True, text=True)
            if res.returncode == 0 and "fully booted" in res.stdout:
                return
            time.sleep(0.2)
        raise RuntimeError("asterisk did not boot within %d s" % limit)

    def cli(self, command):
        """Run one CLI command and return what it printed."""
        res = subprocess.run(["asterisk", "-C", self.conf, "-rx", command],
                             capture_output=True, text=True, timeout=60)
        return res.stdout

    def eval(self, expression):
        """The value of a dialplan function call, e.g. eval('MCD(key)'), with no channel."""
        out = self.cli("dialplan eval function %s" % expression)
        prefix = "Result: "
        for line in out.splitlines():
            if line.startswith(prefix):
                return line[len(prefix):]
        raise AssertionError("no value from %r: %r" % (expression, out))

    def scrape(self):
        """The text of Asterisk's /metrics, or None while nothing serves it."""
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.http_port, timeout=10) as r:
                return r.read().decode()
        except (urllib.error.URLError, OSError):
            return None

    def global_var(self, name):
        return self.eval("GLOBAL(%s)" % name)

    def globals(self):
        """Every global variable, whole (eval cuts values at about 1 KiB)."""
        found = {}
        for line in self.cli("dialplan show globals").splitlines():
            if line.startswith("   ") and "=" in line:
                name, value = line.strip().split("=", 1)
                found[name] = value
        return found

    def run(self, exten, context="tests", limit=30.0):
        """Run exten@context on a Local channel; it must set GLOBAL(DONE_<exten>)=1 last."""
        marker = "DONE_" + exten
        self.cli("dialplan set global %s 0" % marker)
        self.cli("channel originate Local/%s@%s application Wait 0" % (exten, context))
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.global_var(marker) == "1":
                return
            time.sleep(0.05)
        raise AssertionError("%s@%s did not finish within %d s" % (exten, context, limit))

    def wait_for(self, condition, limit=30.0):
        """Poll condition() until it is true; fail after limit seconds."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError("condition not met within %d s" % limit)

    def log(self):
        with open(os.path.join(self.dir, "log", "full"), errors="replace") as f:
            return f.read()

    def stop(self, limit=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(limit)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.output.close()
        shutil.rmtree(self.dir, ignore_errors=True)
