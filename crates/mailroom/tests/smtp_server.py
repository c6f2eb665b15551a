"""mailroom-smtp's aiosmtpd test server (tests/smtp_server.py of that crate, imported as it
is, not copied) plus one thing the facade's tests need: replies given only once.

`scripted` may hold `"RCPT_ONCE": {recipient: reply}`: the first RCPT TO of that recipient
gets the reply, later ones are accepted, so a retry after a transient 451 succeeds.
Usage and behaviour are otherwise exactly those of the imported server.
"""

import importlib.util
import os

HERE = os.path.dirname(os.path.realpath(__file__))
SERVER_PATH = os.path.join(HERE, "..", "..", "mailroom-smtp", "tests", "smtp_server.py")

spec = importlib.util.spec_from_file_location("mailroom_smtp_server", SERVER_PATH)
server = importlib.util.module_from_spec(spec)
spec.loader.exec_module(server)

original_handle_rcpt = server.Handler.handle_RCPT


async def handle_rcpt(self, smtp, session, envelope, address, rcpt_options):
    once = server.CONFIG.get("scripted", {}).get("RCPT_ONCE", {})
    if address in once:
        return once.pop(address)
    return await original_handle_rcpt(self, smtp, session, envelope, address, rcpt_options)


server.Handler.handle_RCPT = handle_rcpt

if __name__ == "__main__":
    server.main()
