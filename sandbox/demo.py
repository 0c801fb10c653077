"""The demo: a real Asterisk runs sandbox/demo-extensions.conf against a real
memcached, then an independent client (pymemcache) reads what it wrote."""

import os
import re
import sys

from pymemcache.client.base import Client

from harness.pbx import Asterisk
from harness.servers import Memcached

HERE = os.path.dirname(os.path.abspath(__file__))

PREFIX = "demo_"


def main():
    server = Memcached()
    ast = None
    try:
        with open(os.path.join(HERE, "demo-extensions.conf")) as f:
            extensions = f.read()
        ast = Asterisk(extensions, "[general]\nserver=%s\nprefixkey=%s\n" % (server.address, PREFIX))
        print("memcached %s and Asterisk %s are up; running s@demo on a Local channel\n"
              % (server.address, ast.cli("core show version").split()[1]))
        ast.run("s", context="demo")
        for line in ast.log().splitlines():
            executed = re.search(r"Executing \[(s@demo:\d+)\] (\w+\(.*\)) in new stack", line)
            if executed and not executed.group(2).startswith("Verbose("):
                print("  %-10s %s" % (executed.group(1), re.sub(r'"Local/[^"]*", ', "", executed.group(2))))
            elif "DEMO: " in line and "Executing [" not in line:
                print("      -> " + line.split("DEMO: ", 1)[1])
        client = Client(("127.0.0.1", server.port))
        print("\nAn independent client (pymemcache) reads the same memcached:")
        for key in ("greeting", "trunk1_calls", "last_caller", "last_hangup"):
            print("  %-22s = %r" % (PREFIX + key, client.get(PREFIX + key)))
        # The group's counter sits 10^9 above memcached's floor of 0 (README: Groups and locks).
        counter = client.get(PREFIX + "_mcd:g:trunks:trunk1")
        print("  %-22s = %r (%s members)" % (PREFIX + "_mcd:g:trunks:trunk1", counter,
                                             int(counter) - 10 ** 9 if counter else 0))
        if client.get(PREFIX + "greeting") != b"some text... and some more text":
            print("demo FAILED: unexpected greeting")
            return 1
        return 0
    finally:
        if ast:
            ast.stop()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
