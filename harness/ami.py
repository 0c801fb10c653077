"""A small Asterisk Manager Interface client: login, send an action, read
the response (and, for list actions, every event up to the closing one)."""

import socket


class Ami:
    def __init__(self, port, user, secret):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("r", encoding="utf-8", newline="\r\n")
        self.file.readline()  # the banner
        self.next_id = 0
        reply = self.action("Login", Username=user, Secret=secret)[0]
        if reply.get("Response") != "Success":
            raise RuntimeError("AMI login refused: %r" % reply)

    def _message(self):
        message = {}
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError("AMI connection closed")
            line = line.rstrip("\r\n")
            if not line:
                if message:
                    return message
                continue
            name, _, value = line.partition(": ")
            message[name] = value

    def action(self, name, **headers):
        """Send an action; return its messages: the response, then any list events."""
        self.next_id += 1
        action_id = "t%d" % self.next_id
        lines = ["Action: " + name, "ActionID: " + action_id]
        lines += ["%s: %s" % item for item in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        messages = []
        while True:
            message = self._message()
            if message.get("ActionID") != action_id:
                continue  # an unrelated event
            messages.append(message)
            if "Response" in message and message.get("EventList") != "start":
                return messages
            if message.get("EventList") == "Complete":
                return messages

    def wait_for_event(self, match, limit=10.0):
        """Read events until one for which match(event) is true, and return it; fail after
        limit seconds. (Events read by action() meanwhile are not seen here.)"""
        import time
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                message = self._message()
            except socket.timeout:
                break
            finally:
                self.sock.settimeout(10)
            if match(message):
                return message
        raise AssertionError("no matching AMI event within %d s" % limit)

    def close(self):
        try:
            self.action("Logoff")
        except (OSError, EOFError):
            pass
        self.sock.close()
