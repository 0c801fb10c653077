"""SASL over the binary protocol against a memcached started with -S and a
sasldb of its own: the right password works, a wrong one gives a clear
MCDRESULT, and the password never shows in Asterisk's log."""

import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from conftest import general
from harness.servers import Memcached

USER = "pbx"
PASSWORD = "s3cret-Pa55word"


@pytest.fixture(scope="module")
def sasl_memcached():
    folder = tempfile.mkdtemp(prefix="sasl-")
    sasldb = os.path.join(folder, "sasldb2")
    subprocess.run(["saslpasswd2", "-a", "memcached", "-c", "-p", "-f", sasldb,
                    "-u", socket.gethostname(), USER],
                   input=PASSWORD.encode(), check=True)
    os.chmod(folder, 0o755)
    os.chmod(sasldb, 0o644)  # memcached drops to "nobody" and must read it
    with open(os.path.join(folder, "memcached.conf"), "w") as f:
        f.write("mech_list: plain\nsasldb_path: %s\n" % sasldb)
    server = Memcached(extra_args=["-S"], env={"SASL_CONF_PATH": folder})
    yield server
    server.stop()
    shutil.rmtree(folder)


def test_right_password_works(start_pbx, sasl_memcached):
    pbx = start_pbx(general("server=" + sasl_memcached.address, "username=" + USER,
                            "password=" + PASSWORD))
    assert pbx.app("mcdset(secret_key,hello)")[1] == "MEMCACHED_SUCCESS"
    assert pbx.fn("${MCD(secret_key)}") == ("hello", "MEMCACHED_SUCCESS")
    assert pbx.fn("${MCDCOUNTER(secret_count,2)}") == ("2", "MEMCACHED_SUCCESS")
    assert PASSWORD not in pbx.ast.log()


def test_noreply_is_not_offered_with_sasl_and_writes_stay_confirmed(start_pbx, sasl_memcached):
    pbx = start_pbx(general("server=" + sasl_memcached.address, "username=" + USER,
                            "password=" + PASSWORD))
    assert pbx.steps(["Set(MCDNOREPLY=yes)", "mcdset(nr_key,confirmed)"], "${MCD(nr_key)}") \
        == ("confirmed", "MEMCACHED_SUCCESS")
    assert pbx.steps(["Set(MCDNOREPLY=yes)", "Set(V=${MCDCOUNTER(nr_count,2)})"], "${V}") \
        == ("2", "MEMCACHED_SUCCESS")


def test_wrong_password_gives_auth_failure(start_pbx, sasl_memcached):
    pbx = start_pbx(general("server=" + sasl_memcached.address, "username=" + USER,
                            "password=not-the-password"))
    assert pbx.fn("${MCD(secret_key)}") == ("", "MEMCACHED_AUTH_FAILURE")
    assert pbx.fn("${MCDCOUNTER(secret_count,1)}") == ("", "MEMCACHED_AUTH_FAILURE")
    assert "not-the-password" not in pbx.ast.log()


def test_no_credentials_are_refused_and_nothing_crashes(start_pbx, sasl_memcached):
    # libmemcached 1.1.4 aborts the process on a binary incr that such a server refuses;
    # counters go through the text protocol here, which the server leaves unanswered.
    pbx = start_pbx(general("server=" + sasl_memcached.address, "binary_proto=yes"))
    assert pbx.app("mcdset(secret_key,x)")[1] == "MEMCACHED_AUTH_FAILURE"
    assert pbx.fn("${MCDCOUNTER(secret_count,1)}") == ("", "MEMCACHED_TIMEOUT")
    # A server that refuses an unauthenticated get says "not found", in libmemcached's words.
    assert pbx.fn("${MCD(secret_key)}") == ("", "MEMCACHED_NOTFOUND")
    assert pbx.ast.proc.poll() is None


def test_credentials_need_the_binary_protocol(start_pbx, sasl_memcached):
    pbx = start_pbx(general("server=" + sasl_memcached.address, "username=" + USER,
                            "password=" + PASSWORD, "binary_proto=no"))
    log = pbx.ast.log()
    assert "memcached.conf: username/password (SASL) need binary_proto=yes" in log
    assert PASSWORD not in log


def test_no_credentials_in_text_are_refused_and_named(start_pbx, sasl_memcached):
    # A memcached with -S speaks binary only: the default text protocol meets a closed door,
    # and the log says what the server does speak.
    pbx = start_pbx(general("server=" + sasl_memcached.address, "timeout=200", "connect_timeout=200"))
    pbx.ast.wait_for(lambda: pbx.fn("${MCD(secret_key)}")[1] == "MEMCACHED_SERVER_TEMPORARILY_DISABLED")
    # The prober asks it in the other protocol, off the call path.
    pbx.ast.wait_for(lambda: "does not answer the text protocol" in pbx.ast.log())
    named = [l for l in pbx.ast.log().splitlines() if "does not answer the text protocol" in l]
    assert len(named) == 1 and "username and password" in named[0], named
    assert pbx.ast.proc.poll() is None

