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

    def close(self):
        try:
            self.action("Logoff")
        except (OSError, EOFError):
            pass
        self.sock.close()
