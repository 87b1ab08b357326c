"""Acceptance peer: the seed RealtimeX Python SDK (realtimex-python 1.0.5, imported as `src`,
its packaging bug) against the RealtimeX endpoint of `switchboard serve`.

What works with the seed as it is: public channels, the channel-level bindings its README
documents (the server's mirror events), published events, and a clear refusal for a private
channel (the seed drops `auth` from its subscribe). Prints `subscribed` once the channel's
`realtimex_internal:subscription_succeeded` binding fired, then waits for the `headline`
event the test publishes; the last line is `ok`.

Run: SWITCHBOARD_HOST=127.0.0.1 SWITCHBOARD_PORT=6001 SWITCHBOARD_APP_KEY=k \
  interop/.venv/bin/python interop/seed_realtimex_peer.py
"""

import os
import queue

from src import RealtimeX  # the wheel installs its package as `src`

HOST = os.environ["SWITCHBOARD_HOST"]
PORT = int(os.environ["SWITCHBOARD_PORT"])
KEY = os.environ["SWITCHBOARD_APP_KEY"]
WAIT = 5

seen = queue.Queue()
client = RealtimeX(
    KEY,
    options={"ws_host": HOST, "ws_port": PORT, "encrypted": False},
    auth_callback=lambda channel, socket_id: "unused: the seed never sends it",
)
client.connection.bind("subscription_error", lambda data: seen.put(("subscription_error", data)))
client.connect()  # blocks until connected (the seed subscribes only once connected)
assert client.connection.state == "connected", client.connection.state
news = client.subscribe("news")
news.bind("realtimex_internal:subscription_succeeded", lambda data: seen.put(("succeeded", data)))
news.bind("headline", lambda data: seen.put(("headline", data)))


def expect(name):
    while True:
        got, data = seen.get(timeout=WAIT)
        if got == name:
            return data


confirmed = expect("succeeded")
assert confirmed["channel"] == "news" and confirmed["socket_id"] == client.connection.socket_id, confirmed
print("subscribed", flush=True)
headline = expect("headline")
assert headline == {"title": "hi"}, headline
client.subscribe("private-orders")
refused = expect("subscription_error")
assert refused["channel"] == "private-orders" and refused["type"] == "AuthError", refused
client.connection.disconnect()
print("ok", flush=True)
# Not sys.exit: the seed's disconnect() schedules a reconnect on a non-daemon timer thread
# (its bug), which would keep the interpreter alive and reconnect.
os._exit(0)
