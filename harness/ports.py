"""Free loopback ports. As a program (python3 -m harness.ports): print a free TCP
port on 127.0.0.1, or with --wait PORT, wait (at most 10 s) until one listens."""
import socket
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--wait":
        sys.exit(0 if wait_listening(int(sys.argv[2])) else 1)
    print(free_port())
