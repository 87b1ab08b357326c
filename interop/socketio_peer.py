"""Interop test: the official python-socketio client (5.18.1, websocket transport) against the
RealtimeX endpoint of `switchboard serve`. Each check raises on failure; the last line printed
is `ok <n>` with the number of checks that passed.

Run (from the repository root, with a server already listening, heartbeat 300/400 ms):
  SWITCHBOARD_HOST=127.0.0.1 SWITCHBOARD_PORT=6001 SWITCHBOARD_APP_KEY=app-key \
  SWITCHBOARD_APP_SECRET=app-secret SWITCHBOARD_PING_MS=300 \
  interop/.venv/bin/python interop/socketio_peer.py
"""

import hashlib
import hmac
import json
import os
import queue
import time

import socketio

HOST = os.environ["SWITCHBOARD_HOST"]
PORT = int(os.environ["SWITCHBOARD_PORT"])
KEY = os.environ["SWITCHBOARD_APP_KEY"]
SECRET = os.environ["SWITCHBOARD_APP_SECRET"].encode()
PING_MS = int(os.environ["SWITCHBOARD_PING_MS"])
URL = f"http://{HOST}:{PORT}"
WAIT = 5
RUN = f"{os.getpid()}-{int(time.time())}"


def sign(socket_id, channel, channel_data=None):
    """What an app's auth endpoint returns: "<key>:<hex HMAC-SHA256>"."""
    text = f"{socket_id}:{channel}" + (f":{channel_data}" if channel_data is not None else "")
    return f"{KEY}:" + hmac.new(SECRET, text.encode(), hashlib.sha256).hexdigest()


def client(key=KEY):
    """A connected websocket-only client with the key in the query (as the seed SDK does)."""
    sio = socketio.Client(reconnection=False)
    events = queue.Queue()
    sio.on("server-event", lambda body: events.put(("server-event", body)))
    sio.on("realtimex:error", lambda body: events.put(("realtimex:error", body)))
    sio.on("realtimex_internal:subscription_succeeded", lambda body: events.put(("succeeded", body)))
    sio.connect(f"{URL}?api_key={key}", transports=["websocket"], wait_timeout=WAIT)
    sio.events = events
    return sio


def next_event(sio, name, match=lambda body: True):
    deadline = time.monotonic() + WAIT
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {name} within {WAIT} s"
        got, body = sio.events.get(timeout=remaining)
        if got == name and match(body):
            return body


passed = 0


def check(name):
    def run(fn):
        global passed
        fn()
        passed += 1
        print(f"pass: {name}", flush=True)

    return run


@check("handshake: the Engine.IO sid and the namespace sid are one Pusher socket id")
def _():
    sio = client()
    namespace_sid = sio.get_sid()
    assert sio.sid == namespace_sid, (sio.sid, namespace_sid)
    left, _, right = namespace_sid.partition(".")
    assert left.isdigit() and right.isdigit(), namespace_sid
    assert sio.transport() == "websocket"
    sio.disconnect()


@check("heartbeat: python-engineio answers the server's pings and stays connected")
def _():
    sio = client()
    time.sleep(PING_MS * 4 / 1000)
    assert sio.connected
    assert sio.call("realtimex:ping", {}, timeout=WAIT) == {"ok": True}
    sio.disconnect()


@check("events with acks: subscribe, then a client event between two clients on a private channel")
def _():
    channel = f"private-chat-{RUN}"
    ada, bob = client(), client()
    for sio in (ada, bob):
        answer = sio.call("realtimex:subscribe", {"channel": channel, "auth": sign(sio.get_sid(), channel)}, timeout=WAIT)
        assert answer["ok"] is True and answer["socket_id"] == sio.get_sid(), answer
        assert next_event(sio, "succeeded")["channel"] == channel
    sent = ada.call("client-event", {"channel": channel, "event": "client-hello", "data": {"n": 1}}, timeout=WAIT)
    assert sent == {"ok": True}, sent
    body = next_event(bob, "server-event", lambda b: b["event"] == "client-hello")
    assert body["data"] == {"n": 1} and body["channel"] == channel, body
    refused = bob.call("realtimex:subscribe", {"channel": f"private-x-{RUN}", "auth": sign("1.1", channel)}, timeout=WAIT)
    assert refused["ok"] is False and refused["type"] == "AuthError", refused
    ada.disconnect()
    bob.disconnect()


@check("presence: the roster and member events, with user_info")
def _():
    channel = f"presence-room-{RUN}"
    ada, bob = client(), client()
    data = json.dumps({"user_id": "ada", "user_info": {"name": "Ada"}})
    answer = ada.call("realtimex:subscribe", {"channel": channel, "auth": sign(ada.get_sid(), channel, data), "channel_data": data}, timeout=WAIT)
    assert answer["presence"]["ids"] == ["ada"], answer
    data = json.dumps({"user_id": 7})
    answer = bob.call("realtimex:subscribe", {"channel": channel, "auth": sign(bob.get_sid(), channel, data), "channel_data": data}, timeout=WAIT)
    assert answer["presence"]["count"] == 2 and answer["presence"]["hash"]["ada"] == {"name": "Ada"}, answer
    added = next_event(ada, "server-event", lambda b: b["event"] == "realtimex_internal:member_added")
    assert added["data"] == {"user_id": "7", "user_info": None}, added
    next_event(ada, "server-event", lambda b: b["event"] == "presence:member_added")
    bob.disconnect()
    removed = next_event(ada, "server-event", lambda b: b["event"] == "realtimex_internal:member_removed")
    assert removed["data"] == {"user_id": "7"}, removed
    ada.disconnect()


@check("binary attachments: read whole, refused with 4300, and the stream stays in step")
def _():
    sio = client()
    answer = sio.call("upload", {"file": b"\x00\x01\x02", "more": [b"\xff" * 64]}, timeout=WAIT)
    assert answer["ok"] is False and answer["code"] == 4300, answer
    assert next_event(sio, "realtimex:error")["code"] == 4300
    assert sio.call("realtimex:ping", {}, timeout=WAIT) == {"ok": True}
    sio.disconnect()


@check("a bad key: the namespace CONNECT is refused with the server's message")
def _():
    refused = []
    sio = socketio.Client(reconnection=False)
    sio.on("connect_error", lambda data: refused.append(data))
    try:
        sio.connect(f"{URL}?api_key=no-such-key", transports=["websocket"], wait_timeout=WAIT)
    except socketio.exceptions.ConnectionError:
        pass
    else:
        raise AssertionError("connected with a bad key")
    assert refused and refused[0]["message"] == "Invalid API key" and refused[0]["data"]["code"] == 4001, refused
    sio.disconnect()


print(f"ok {passed}", flush=True)
