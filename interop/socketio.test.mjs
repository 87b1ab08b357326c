// Interop test: the official socket.io-client (4.8.4) against the RealtimeX endpoint of
// `switchboard serve` (`/socket.io/`), with the official `pusher` Node SDK (5.3.4) signing
// channel auth over `socket.id` and publishing, and pusher-js (8.6.0) sharing a presence
// channel with a socket.io-client member.
//
// Run (from the repository root, with a server already listening, heartbeat 300/400 ms):
//   SWITCHBOARD_HOST=127.0.0.1 SWITCHBOARD_PORT=6001 SWITCHBOARD_APP_ID=1000 \
//   SWITCHBOARD_APP_KEY=app-key SWITCHBOARD_APP_SECRET=app-secret SWITCHBOARD_PING_MS=300 \
//   node --test --test-reporter=spec interop/socketio.test.mjs

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { io } from 'socket.io-client';
import Pusher from 'pusher-js';
import PusherServer from 'pusher';

const REQUIRED = [
  'SWITCHBOARD_HOST',
  'SWITCHBOARD_PORT',
  'SWITCHBOARD_APP_ID',
  'SWITCHBOARD_APP_KEY',
  'SWITCHBOARD_APP_SECRET',
  'SWITCHBOARD_PING_MS',
];
const missing = REQUIRED.filter((name) => !process.env[name]);
if (missing.length > 0) {
  throw new Error(`socket.io interop test: missing environment variable(s): ${missing.join(', ')}`);
}
const HOST = process.env.SWITCHBOARD_HOST;
const PORT = Number(process.env.SWITCHBOARD_PORT);
const APP_ID = process.env.SWITCHBOARD_APP_ID;
const APP_KEY = process.env.SWITCHBOARD_APP_KEY;
const PING_MS = Number(process.env.SWITCHBOARD_PING_MS);
const URL = `http://${HOST}:${PORT}`;
const WAIT_MS = 5000;
const TEST_OPTS = { timeout: 20000 };
const RUN = `${process.pid}-${Date.now().toString(36)}`;

const sdk = new PusherServer({
  appId: APP_ID,
  key: APP_KEY,
  secret: process.env.SWITCHBOARD_APP_SECRET,
  host: HOST,
  port: PORT,
  useTLS: false,
});

const open = [];
after(() => {
  for (const closable of open) closable();
});

/** A websocket-only socket.io-client with the app key in the query; not yet connected. */
function client(query = { api_key: APP_KEY }, extra = {}) {
  const socket = io(URL, { transports: ['websocket'], query, reconnectionDelay: 100, ...extra, autoConnect: false });
  open.push(() => socket.disconnect());
  return socket;
}

/**
 * Resolve with the arguments of the next `event` on `emitter` (a socket.io socket, or a
 * pusher-js channel with bind/unbind), or reject after WAIT_MS.
 */
function next(emitter, event, filter = () => true) {
  const [listen, stop] = typeof emitter.bind === 'function' && typeof emitter.unbind === 'function'
    ? ['bind', 'unbind']
    : ['on', 'off'];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter[stop](event, on);
      reject(new Error(`no ${event} within ${WAIT_MS} ms`));
    }, WAIT_MS);
    const on = (...args) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      emitter[stop](event, on);
      resolve(args);
    };
    emitter[listen](event, on);
  });
}

async function connected(socket) {
  const connecting = next(socket, 'connect');
  socket.connect();
  await connecting;
  return socket;
}

/** The next `server-event` named `name` (on `channel`). */
function serverEvent(socket, name, channel) {
  return next(socket, 'server-event', (body) => body.event === name && (!channel || body.channel === channel)).then(
    ([body]) => body,
  );
}

test('handshake: one Pusher-format id as the Engine.IO sid and socket.id', TEST_OPTS, async () => {
  const socket = await connected(client());
  assert.match(socket.id, /^\d+\.\d+$/);
  assert.equal(socket.io.engine.id, socket.id);
  assert.equal(socket.io.engine.transport.name, 'websocket');
  socket.disconnect();
});

test('heartbeat: the server pings and the client stays connected', TEST_OPTS, async () => {
  const socket = await connected(client());
  let pings = 0;
  socket.io.engine.on('ping', () => {
    pings += 1;
  });
  let dropped = false;
  socket.on('disconnect', () => {
    dropped = true;
  });
  await sleep(PING_MS * 4);
  assert.ok(pings >= 2, `only ${pings} pings in ${PING_MS * 4} ms`);
  assert.equal(dropped, false);
  const pong = await socket.timeout(WAIT_MS).emitWithAck('realtimex:ping', {});
  assert.deepEqual(pong, { ok: true });
  socket.disconnect();
});

test('events with acks: subscribe, a published server-event, unsubscribe', TEST_OPTS, async () => {
  const socket = await connected(client());
  const channel = `news-${RUN}`;
  const confirmed = next(socket, 'realtimex_internal:subscription_succeeded');
  const ack = await socket.timeout(WAIT_MS).emitWithAck('realtimex:subscribe', { channel });
  assert.equal(ack.ok, true);
  assert.equal(ack.socket_id, socket.id);
  assert.equal((await confirmed)[0].channel, channel);
  const arrived = serverEvent(socket, 'headline', channel);
  await sdk.trigger(channel, 'headline', { id: 7 });
  assert.deepEqual((await arrived).data, { id: 7 });
  // Excluded by socket_id, as the SDK's `socket_id` parameter means.
  let excludedArrived = false;
  const onExcluded = (body) => {
    if (body.event === 'excluded') excludedArrived = true;
  };
  socket.on('server-event', onExcluded);
  await sdk.trigger(channel, 'excluded', {}, { socket_id: socket.id });
  const afterIt = serverEvent(socket, 'after', channel);
  await sdk.trigger(channel, 'after', {});
  await afterIt;
  assert.equal(excludedArrived, false);
  const left = await socket.timeout(WAIT_MS).emitWithAck('realtimex:unsubscribe', { channel });
  assert.deepEqual(left, { ok: true, channel });
  socket.disconnect();
});

test('private channels: auth signed by the pusher SDK over socket.id', TEST_OPTS, async () => {
  const socket = await connected(client());
  const channel = `private-orders-${RUN}`;
  const refused = await socket.timeout(WAIT_MS).emitWithAck('realtimex:subscribe', { channel, auth: `${APP_KEY}:00` });
  assert.equal(refused.ok, false);
  assert.equal(refused.type, 'AuthError');
  const { auth } = sdk.authorizeChannel(socket.id, channel);
  const ack = await socket.timeout(WAIT_MS).emitWithAck('realtimex:subscribe', { channel, auth });
  assert.equal(ack.ok, true);
  socket.disconnect();
});

test('binary attachments are read whole, refused with 4300, and the stream stays in step', TEST_OPTS, async () => {
  const socket = await connected(client());
  const errors = [];
  socket.on('realtimex:error', (error) => errors.push(error));
  const answer = await socket
    .timeout(WAIT_MS)
    .emitWithAck('upload', Buffer.from([1, 2, 3]), { nested: [Buffer.alloc(32, 7)] });
  assert.equal(answer.ok, false);
  assert.equal(answer.code, 4300);
  assert.match(answer.message, /Binary events/);
  assert.deepEqual(await socket.timeout(WAIT_MS).emitWithAck('realtimex:ping', {}), { ok: true });
  assert.equal(errors.length, 1);
  assert.equal(socket.connected, true);
  socket.disconnect();
});

test('a bad key gets CONNECT_ERROR 4001 and socket.io-client does not retry', TEST_OPTS, async () => {
  const socket = client({ api_key: 'no-such-key' });
  const refused = next(socket, 'connect_error');
  socket.connect();
  const [error] = await refused;
  assert.equal(error.message, 'Invalid API key');
  assert.equal(error.data.code, 4001);
  await sleep(300);
  assert.equal(socket.active, false, 'a CONNECT_ERROR from the server stops the client');
  assert.equal(socket.connected, false);
  // The key may also come in the CONNECT auth payload.
  const keyed = await connected(client({}, { auth: { api_key: APP_KEY } }));
  assert.match(keyed.id, /^\d+\.\d+$/);
  keyed.disconnect();
});

test('pusher-js and socket.io-client share a presence channel', TEST_OPTS, async () => {
  const channel = `presence-room-${RUN}`;
  const pusher = new Pusher(APP_KEY, {
    wsHost: HOST,
    wsPort: PORT,
    forceTLS: false,
    enabledTransports: ['ws'],
    cluster: 'mt1',
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        callback(null, sdk.authorizeChannel(socketId, channelName, { user_id: 'ada', user_info: { name: 'Ada' } }));
      },
    },
  });
  open.push(() => pusher.disconnect());
  const members = pusher.subscribe(channel);
  await next(members, 'pusher:subscription_succeeded');

  const socket = await connected(client());
  const signed = sdk.authorizeChannel(socket.id, channel, { user_id: 'bob', user_info: { name: 'Bob' } });
  const bobSeen = next(members, 'pusher:member_added');
  const ack = await socket.timeout(WAIT_MS).emitWithAck('realtimex:subscribe', { channel, ...signed });
  assert.equal(ack.ok, true);
  assert.deepEqual(ack.presence.ids.sort(), ['ada', 'bob']);
  assert.deepEqual(ack.presence.hash.ada, { name: 'Ada' });
  const [bob] = await bobSeen;
  assert.deepEqual(bob, { id: 'bob', info: { name: 'Bob' } });

  // Client events both ways.
  const typed = next(members, 'client-typing');
  const sent = await socket
    .timeout(WAIT_MS)
    .emitWithAck('client-event', { channel, event: 'client-typing', data: { on: true } });
  assert.deepEqual(sent, { ok: true });
  const [data, metadata] = await typed;
  assert.deepEqual(data, { on: true });
  assert.equal(metadata.user_id, 'bob');
  const waved = serverEvent(socket, 'client-wave', channel);
  members.trigger('client-wave', { hand: 'left' });
  const wave = await waved;
  assert.deepEqual(wave.data, { hand: 'left' });
  assert.equal(wave.user_id, 'ada');

  // Both members in the HTTP API, then bob leaves with his socket.
  const users = await sdk.get({ path: `/channels/${channel}/users` });
  assert.equal((await users.json()).users.length, 2);
  const bobGone = next(members, 'pusher:member_removed');
  socket.disconnect();
  assert.equal((await bobGone)[0].id, 'bob');
  pusher.disconnect();
});

test('terminate_connections sends a server disconnect: no reconnect', TEST_OPTS, async () => {
  const channel = `presence-kick-${RUN}`;
  const socket = await connected(client());
  const signed = sdk.authorizeChannel(socket.id, channel, { user_id: `kicked-${RUN}` });
  assert.equal((await socket.timeout(WAIT_MS).emitWithAck('realtimex:subscribe', { channel, ...signed })).ok, true);
  const gone = next(socket, 'disconnect');
  await sdk.terminateUserConnections(`kicked-${RUN}`);
  const [reason] = await gone;
  assert.equal(reason, 'io server disconnect');
  await sleep(400);
  assert.equal(socket.connected, false, 'socket.io-client does not reconnect after a server disconnect');
});
