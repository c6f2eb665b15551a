"""A real SMTP server (aiosmtpd) for mailroom's tests and benchmarks: the one copy in the
repository, started by mailroom-testkit's `smtp::TestServer`.

Adds what aiosmtpd lacks: XOAUTH2 and OAUTHBEARER handlers that check the bearer token and,
on a wrong one, send the 334 base64-JSON error challenge, read the client's answer, then
reply 535. Records every AUTH (the exact decoded initial response), challenge answer and
stored message (with its Message-ID; its bytes in a file unless `store_bodies` is false) as
JSON lines in the log file the tests read.

Scripted replies (`scripted` in the config): `{"AUTH": {token: reply}, "MAIL": {sender:
reply}, "RCPT": {recipient: reply}, "DATA": {recipient: reply}}` are given every time;
`{"RCPT_ONCE": {recipient: reply}}` only to that recipient's first RCPT TO (later ones are
accepted, so a retry after a transient 451 succeeds).

Usage: python3 smtp_server.py CONFIG.json
Prints "READY <port> <pids>" on stdout once listening; exits when stdin closes (the test that
started it ended) or on SIGTERM.
"""

import asyncio
import base64
import binascii
import itertools
import json
import os
import signal
import socket
import ssl
import logging
import sys

try:
    from aiosmtpd.smtp import SMTP, AuthResult, MISSING
except ImportError:
    sys.stderr.write(
        "smtp_server.py: aiosmtpd is missing; install it with "
        "`python3 -m pip install -r .ci/requirements.txt`\n"
    )
    sys.exit(3)

# aiosmtpd 1.4 logs a warning about its own use of `Session.login_data` on every
# successful AUTH.
logging.getLogger("mail.log").setLevel(logging.ERROR)

CONFIG = {}
LOG = None
COUNTER = itertools.count(1)
CONNECTIONS = itertools.count(1)


def log(event):
    if LOG is not None:
        LOG.write(json.dumps(event) + "\n")
        LOG.flush()


def is_tls(server):
    transport = server.transport
    return server._tls_protocol is not None or (
        transport is not None and transport.get_extra_info("sslcontext") is not None
    )


def connection_id(server):
    session = server.session
    if not hasattr(session, "mailroom_connection"):
        session.mailroom_connection = next(CONNECTIONS)
    return session.mailroom_connection


def scripted(stage, key):
    return CONFIG.get("scripted", {}).get(stage, {}).get(key)


def message_id_of(content):
    """The Message-ID header's value (unfolded, trimmed), or None: what the agent benchmark
    and the exactly-once tests count deliveries by."""
    header, _, _ = content.partition(b"\r\n\r\n")
    lines = header.split(b"\r\n")
    for index, line in enumerate(lines):
        if line[:11].lower() == b"message-id:":
            value = line[11:]
            for folded in lines[index + 1:]:
                if folded[:1] not in (b" ", b"\t"):
                    break
                value += folded
            return value.decode("utf-8", "replace").strip()
    return None


class MailroomAuthenticator:
    """PLAIN and LOGIN (aiosmtpd's own implementations) check passwords here."""

    def __call__(self, server, session, envelope, mechanism, auth_data):
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        accepted = CONFIG.get("passwords", {}).get(login) == password
        log({
            "event": "auth",
            "mechanism": mechanism,
            "login": login,
            "password": password,
            "accepted": accepted,
            "tls": is_tls(server),
            "connection": connection_id(server),
        })
        return AuthResult(success=accepted, handled=False)


class Handler:
    async def _bearer(self, server, args, mechanism, parse):
        if len(args) == 2:
            try:
                initial = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                return AuthResult(success=False, handled=False, message="501 5.5.2 Can't decode base64")
        else:
            initial = await server.challenge_auth("")
            if initial is MISSING:
                return AuthResult(success=False, handled=True)
        text = initial.decode("utf-8", "replace")
        user, token = parse(text)
        log({
            "event": "auth",
            "mechanism": mechanism,
            "initial": text,
            "tls": is_tls(server),
            "connection": connection_id(server),
        })
        reply = scripted("AUTH", token)
        if reply is not None:
            return AuthResult(success=False, handled=False, message=reply)
        if user is not None and token in CONFIG.get("tokens", {}).get(user, []):
            return AuthResult(success=True, auth_data=user)
        challenge = json.dumps(CONFIG.get("challenge", {
            "status": "invalid_token",
            "schemes": "Bearer",
            "scope": "https://outlook.office.com/SMTP.Send",
        }))
        answer = await server.challenge_auth(challenge)
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        log({
            "event": "challenge_answer",
            "mechanism": mechanism,
            "answer": answer.decode("latin-1"),
            "connection": connection_id(server),
        })
        return AuthResult(
            success=False,
            handled=False,
            message=CONFIG.get(
                "rejection", "535 5.7.8 Username and Password not accepted (token rejected)"
            ),
        )

    async def auth_XOAUTH2(self, server, args):
        def parse(text):
            fields = dict(
                part.split("=", 1) for part in text.split("\x01") if "=" in part
            )
            auth = fields.get("auth", "")
            token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
            return fields.get("user"), token

        return await self._bearer(server, args, "XOAUTH2", parse)

    async def auth_OAUTHBEARER(self, server, args):
        def parse(text):
            gs2, _, rest = text.partition("\x01")
            user = None
            for part in gs2.split(","):
                if part.startswith("a="):
                    user = part[2:].replace("=2C", ",").replace("=3D", "=")
            token = None
            for part in rest.split("\x01"):
                if part.startswith("auth=Bearer "):
                    token = part[len("auth=Bearer "):]
            return user, token

        return await self._bearer(server, args, "OAUTHBEARER", parse)

    async def handle_NOOP(self, server, session, envelope, arg):
        log({"event": "noop", "connection": connection_id(server)})
        return "250 2.0.0 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = scripted("MAIL", address)
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        once = CONFIG.get("scripted", {}).get("RCPT_ONCE", {})
        if address in once:
            return once.pop(address)
        reply = scripted("RCPT", address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server, session, envelope):
        for recipient in envelope.rcpt_tos:
            reply = scripted("DATA", recipient)
            if reply is not None:
                return reply
        number = next(COUNTER)
        if CONFIG.get("store", True):
            event = {
                "event": "message",
                "mail_from": envelope.mail_from,
                "mail_options": envelope.mail_options,
                "rcpt_tos": envelope.rcpt_tos,
                "message_id": message_id_of(envelope.original_content),
                "tls": is_tls(server),
                "connection": connection_id(server),
            }
            if CONFIG.get("store_bodies", True):
                path = os.path.join(CONFIG["mail_dir"], f"{os.getpid()}-{number}.eml")
                with open(path, "wb") as file:
                    file.write(envelope.original_content)
                event["file"] = path
            log(event)
        if any(r in CONFIG.get("close_after", []) for r in envelope.rcpt_tos):
            # Accept, then hang up: the client's pooled connection is dead on its next use.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return f"250 2.0.0 OK queued as {number}"


def tls_context():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(CONFIG["cert"], CONFIG["key"])
    return context


def factory():
    mode = CONFIG.get("tls", "starttls")
    exclude = [
        m for m in ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")
        if m not in CONFIG.get("mechanisms", ["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"])
    ]
    kwargs = dict(
        hostname="mailroom-test-server",
        data_size_limit=64 * 1024 * 1024,
        enable_SMTPUTF8=True,
        decode_data=False,
        auth_exclude_mechanism=exclude,
        authenticator=MailroomAuthenticator(),
        # No per-session command limit: the benchmark sends thousands of messages over one
        # connection.
        command_call_limit=None,
    )
    if mode == "starttls":
        kwargs.update(tls_context=tls_context(), auth_require_tls=True)
    else:
        # Implicit TLS (aiosmtpd does not count it as TLS for AUTH) or plaintext.
        kwargs.update(auth_require_tls=False)
    return SMTP(Handler(), **kwargs)


def stop_on_stdin_eof(loop, stop):
    def on_stdin():
        if not os.read(sys.stdin.fileno(), 4096) and not stop.done():
            stop.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))


def server_ssl():
    return tls_context() if CONFIG.get("tls", "starttls") == "implicit" else None


async def serve(sock):
    """One process: accept and serve on the listening socket."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, sock=sock, ssl=server_ssl())
    stop = loop.create_future()
    stop_on_stdin_eof(loop, stop)
    async with server:
        await stop


async def serve_handed_over(channel):
    """A worker process: serve the connections the dispatcher hands over on `channel`."""
    loop = asyncio.get_running_loop()
    ssl_context = server_ssl()
    stop = loop.create_future()
    stop_on_stdin_eof(loop, stop)
    channel.setblocking(False)

    def on_fd():
        try:
            _, fds, _, _ = socket.recv_fds(channel, 1, 4)
        except BlockingIOError:
            return
        if not fds:
            if not stop.done():
                stop.set_result(None)
            return
        for fd in fds:
            connection = socket.socket(fileno=fd)
            asyncio.ensure_future(
                loop.connect_accepted_socket(factory, connection, ssl=ssl_context)
            )

    loop.add_reader(channel.fileno(), on_fd)
    await stop


async def dispatch(sock, channels):
    """Accept connections and hand them to the workers in turn, so N connections spread
    evenly over the processes (a shared accept would let one process take them all)."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    stop_on_stdin_eof(loop, stop)
    sock.setblocking(False)
    turn = itertools.cycle(channels)

    def on_accept():
        try:
            connection, _ = sock.accept()
        except BlockingIOError:
            return
        socket.send_fds(next(turn), [b"c"], [connection.fileno()])
        connection.close()

    loop.add_reader(sock.fileno(), on_accept)
    await stop


def main():
    global CONFIG, LOG
    with open(sys.argv[1]) as file:
        CONFIG = json.load(file)
    if CONFIG.get("log"):
        LOG = open(CONFIG["log"], "a", buffering=1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    workers = int(CONFIG.get("workers", 1))
    if workers <= 1:
        print(f"READY {port} {os.getpid()}", flush=True)
        asyncio.run(serve(sock))
        return
    # Several worker processes (the benchmark: one Python process cannot keep up with
    # four Rust clients), fed by this process.
    children, channels = [], []
    for _ in range(workers):
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            parent_end.close()
            sock.close()
            asyncio.run(serve_handed_over(child_end))
            os._exit(0)
        child_end.close()
        children.append(pid)
        channels.append(parent_end)
    # The pids let the benchmark report the server's CPU time.
    pids = " ".join(str(pid) for pid in [os.getpid(), *children])
    print(f"READY {port} {pids}", flush=True)
    try:
        asyncio.run(dispatch(sock, channels))
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    main()
