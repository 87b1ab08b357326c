// Interop test: the official pusher-js client (8.6.0, Node build) and the official
// Node server SDK `pusher` (5.3.4) against `switchboard serve`.
//
// Run (from the repository root, with a server already listening):
//   SWITCHBOARD_HOST=127.0.0.1 SWITCHBOARD_PORT=6001 SWITCHBOARD_APP_ID=1001 \
//   SWITCHBOARD_APP_KEY=app-key SWITCHBOARD_APP_SECRET=app-secret \
//   node --test --test-reporter=spec interop/pusher-js.test.mjs
//
// Channel auth goes through a real HTTP endpoint (node `http`, port 0) that pusher-js
// calls with its 'ajax' transport; in Node that is the node-XMLHttpRequest shim bundled
// into pusher-js/dist/node/pusher.js (a form POST made with node's `http` module).
// Set SWITCHBOARD_DEBUG=1 to print pusher-js's own debug log.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import Pusher from 'pusher-js'; // package "main" = dist/node/pusher.js (the Node build)
import PusherServer from 'pusher';

// ---- configuration: every variable is required ------------------------------------------

const REQUIRED = [
  'SWITCHBOARD_HOST',
  'SWITCHBOARD_PORT',
  'SWITCHBOARD_APP_ID',
  'SWITCHBOARD_APP_KEY',
  'SWITCHBOARD_APP_SECRET',
];
const missing = REQUIRED.filter((name) => !process.env[name]);
if (missing.length > 0) {
  throw new Error(`pusher-js interop test: missing environment variable(s): ${missing.join(', ')}`);
}
const HOST = process.env.SWITCHBOARD_HOST;
const PORT = Number(process.env.SWITCHBOARD_PORT);
const APP_ID = process.env.SWITCHBOARD_APP_ID;
const APP_KEY = process.env.SWITCHBOARD_APP_KEY;
const APP_SECRET = process.env.SWITCHBOARD_APP_SECRET;
if (!Number.isInteger(PORT) || PORT <= 0 || PORT > 65535) {
  throw new Error(`SWITCHBOARD_PORT is not a port number: ${process.env.SWITCHBOARD_PORT}`);
}
if (!/^\d+$/.test(APP_ID)) {
  throw new Error(`SWITCHBOARD_APP_ID must be digits: ${APP_ID}`);
}

const WAIT_MS = 5000; // per awaited event
const TEST_OPTS = { timeout: 15000 };
const RUN = `${process.pid}-${Date.now().toString(36)}`; // unique channel names per run

const sdk = new PusherServer({
  appId: APP_ID,
  key: APP_KEY,
  secret: APP_SECRET,
  host: HOST,
  port: PORT,
  useTLS: false,
});
// Signs with the wrong secret: the server must refuse subscriptions authorised by it.
const forger = new PusherServer({
  appId: APP_ID,
  key: APP_KEY,
  secret: `${APP_SECRET}-wrong`,
  host: HOST,
  port: PORT,
  useTLS: false,
});

// pusher-js logs only through Pusher.log / Pusher.logToConsole; keep the tail for errors.
const pusherLog = [];
Pusher.log = (message) => {
  if (process.env.SWITCHBOARD_DEBUG) console.error(`[pusher-js] ${message}`);
  pusherLog.push(message);
  if (pusherLog.length > 40) pusherLog.shift();
};
const recentLog = () => `\nlast pusher-js log lines:\n  ${pusherLog.slice(-15).join('\n  ')}`;

// ---- auth endpoint ----------------------------------------------------------------------

const authRequests = [];
let authBase; // http://127.0.0.1:<port>

// POST /pusher/auth  -> sdk.authorizeChannel (presence user from the form params user_id/user_info)
// POST /deny         -> 403
// POST /forged       -> a well-formed answer signed with the wrong secret
const authServer = http.createServer((req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => (body += chunk));
  req.on('end', () => {
    const reply = (status, payload) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(payload));
    };
    const path = new URL(req.url, 'http://auth.invalid').pathname;
    const form = new URLSearchParams(body);
    const socketId = form.get('socket_id');
    const channel = form.get('channel_name');
    authRequests.push({ path, method: req.method, contentType: req.headers['content-type'], socketId, channel });
    if (req.method !== 'POST') return reply(405, { error: 'POST only' });
    if (!socketId || !channel) return reply(400, { error: 'socket_id and channel_name required' });
    if (path === '/deny') return reply(403, { error: 'forbidden' });
    let presenceData;
    if (channel.startsWith('presence-')) {
      const userId = form.get('user_id');
      if (!userId) return reply(400, { error: 'user_id required for presence' });
      presenceData = { user_id: userId, user_info: JSON.parse(form.get('user_info') ?? '{}') };
    }
    try {
      if (path === '/pusher/auth') return reply(200, sdk.authorizeChannel(socketId, channel, presenceData));
      if (path === '/forged') return reply(200, forger.authorizeChannel(socketId, channel, presenceData));
      return reply(404, { error: `no route ${path}` });
    } catch (err) {
      // e.g. the SDK rejects a socket_id that is not /^\d+\.\d+$/
      return reply(500, { error: String(err) });
    }
  });
});

before(async () => {
  await new Promise((resolve, reject) => {
    authServer.once('error', reject);
    authServer.listen(0, '127.0.0.1', resolve);
  });
  authBase = `http://127.0.0.1:${authServer.address().port}`;
});

after(async () => {
  authServer.closeAllConnections();
  await new Promise((resolve) => authServer.close(resolve));
});

// ---- helpers ----------------------------------------------------------------------------

const clients = [];

afterEach(() => {
  for (const p of clients.splice(0)) p.disconnect();
});

/** A pusher-js client; `user` = {id, info} for presence channels; `auth` = endpoint path. */
function client({ user, auth = '/pusher/auth' } = {}) {
  const params = user ? { user_id: user.id, user_info: JSON.stringify(user.info) } : {};
  const p = new Pusher(APP_KEY, {
    cluster: '',
    wsHost: HOST,
    wsPort: PORT,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: { endpoint: `${authBase}${auth}`, transport: 'ajax', params },
  });
  clients.push(p);
  return p;
}

/** Resolves with {data, metadata} of the next `event` on a pusher-js emitter (channel,
 *  connection or client); rejects after `ms` or on `failOn`. */
function nextEvent(emitter, event, ms = WAIT_MS, failOn) {
  return new Promise((resolve, reject) => {
    const finish = (settle, value) => {
      clearTimeout(timer);
      emitter.unbind(event, onEvent);
      if (failOn) emitter.unbind(failOn, onFail);
      settle(value);
    };
    const onEvent = (data, metadata) => finish(resolve, { data, metadata });
    const onFail = (data) =>
      finish(reject, new Error(`got ${failOn} while waiting for ${event}: ${JSON.stringify(data)}`));
    const timer = setTimeout(
      () => finish(reject, new Error(`timed out after ${ms} ms waiting for ${event}${recentLog()}`)),
      ms,
    );
    emitter.bind(event, onEvent);
    if (failOn) emitter.bind(failOn, onFail);
  });
}

/** Resolves with the data of the next `event`. */
const waitFor = (emitter, event, ms, failOn) => nextEvent(emitter, event, ms, failOn).then((e) => e.data);

/** Resolves with the socket_id once the client is connected. */
async function connected(pusher, ms = WAIT_MS) {
  if (pusher.connection.state !== 'connected') {
    await waitFor(pusher.connection, 'connected', ms, 'disconnected');
  }
  return pusher.connection.socket_id;
}

/** Subscribes and waits for pusher:subscription_succeeded; resolves with the channel. */
async function subscribe(pusher, name) {
  await connected(pusher);
  const channel = pusher.subscribe(name);
  await waitFor(channel, 'pusher:subscription_succeeded', WAIT_MS, 'pusher:subscription_error');
  return channel;
}

/** Records every `event` on an emitter as {data, metadata}. */
function record(emitter, event) {
  const seen = [];
  emitter.bind(event, (data, metadata) => seen.push({ data, metadata }));
  return seen;
}

/** Polls `cond` every 10 ms. */
async function until(cond, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}${recentLog()}`);
    await sleep(10);
  }
}

/** Signed GET on the HTTP API through the SDK, parsed as JSON. */
async function api(path, params) {
  const res = await sdk.get({ path, params });
  assert.equal(res.status, 200);
  return res.json();
}

/** Triggers `marker` on `channel` and waits until `channel` (a subscription) receives it.
 *  Whatever the server queued to that connection before is then already delivered. */
async function flush(channel, id = Math.random().toString(36).slice(2)) {
  await Promise.all([waitFor(channel, 'marker'), sdk.trigger(channel.name, 'marker', { id })]);
}

// ---- tests ------------------------------------------------------------------------------

test('connects with pusher-js and receives a socket_id', TEST_OPTS, async () => {
  const a = client();
  const socketId = await connected(a);
  assert.match(socketId, /^\d+\.\d+$/);
  assert.equal(a.connection.state, 'connected');
});

test('public channel: SDK trigger delivers the exact data', TEST_OPTS, async () => {
  const a = client();
  const channel = await subscribe(a, `room-${RUN}`);
  assert.equal(channel.subscribed, true);

  const payload = { msg: 'héllo "quoted" \\ ✓ 🚀', n: 42, f: 1.5, ok: true, none: null, list: [1, 'two', { three: 3 }] };
  const [got] = await Promise.all([waitFor(channel, 'greeting'), sdk.trigger(channel.name, 'greeting', payload)]);
  assert.deepEqual(got, payload);

  // A non-JSON string is relayed verbatim (pusher-js keeps it as a string).
  const [text] = await Promise.all([waitFor(channel, 'text'), sdk.trigger(channel.name, 'text', 'plain text, not JSON')]);
  assert.equal(text, 'plain text, not JSON');
});

test('public channel: SDK trigger to several channels', TEST_OPTS, async () => {
  const a = client();
  const b = client();
  const one = await subscribe(a, `multi-1-${RUN}`);
  const two = await subscribe(b, `multi-2-${RUN}`);
  const alsoTwo = await subscribe(a, `multi-2-${RUN}`);

  const payload = { fan: 'out' };
  const [gotOne, gotTwo, gotAlsoTwo] = await Promise.all([
    waitFor(one, 'fanout'),
    waitFor(two, 'fanout'),
    waitFor(alsoTwo, 'fanout'),
    sdk.trigger([one.name, two.name], 'fanout', payload),
  ]);
  assert.deepEqual(gotOne, payload);
  assert.deepEqual(gotTwo, payload);
  assert.deepEqual(gotAlsoTwo, payload);
});

test('public channel: SDK triggerBatch delivers events in order', TEST_OPTS, async () => {
  const a = client();
  const channel = await subscribe(a, `batch-${RUN}`);
  const seen = record(channel, 'step');

  await sdk.triggerBatch([
    { channel: channel.name, name: 'step', data: { seq: 1 } },
    { channel: channel.name, name: 'step', data: { seq: 2 } },
  ]);
  await until(() => seen.length >= 2, 'both batch events arrived');
  assert.deepEqual(
    seen.map((e) => e.data),
    [{ seq: 1 }, { seq: 2 }],
  );
});

test('public channel: SDK trigger with socket_id excludes that connection', TEST_OPTS, async () => {
  const a = client();
  const b = client();
  const name = `exclude-${RUN}`;
  const chA = await subscribe(a, name);
  const chB = await subscribe(b, name);
  const seenByA = record(chA, 'news');

  const [gotB] = await Promise.all([
    waitFor(chB, 'news'),
    sdk.trigger(name, 'news', { for: 'everyone but A' }, { socket_id: a.connection.socket_id }),
  ]);
  assert.deepEqual(gotB, { for: 'everyone but A' });
  await flush(chA); // anything sent to A before the marker has arrived by now
  assert.deepEqual(seenByA, []);
});

test('private channel: subscription through the auth endpoint', TEST_OPTS, async () => {
  const a = client();
  const socketId = await connected(a);
  const name = `private-orders-${RUN}`;
  const channel = await subscribe(a, name);
  assert.equal(channel.subscribed, true);

  const request = authRequests.find((r) => r.channel === name);
  assert.ok(request, 'the auth endpoint was called');
  assert.deepEqual(request, {
    path: '/pusher/auth',
    method: 'POST',
    contentType: 'application/x-www-form-urlencoded',
    socketId,
    channel: name,
  });

  const [got] = await Promise.all([waitFor(channel, 'order'), sdk.trigger(name, 'order', { id: 7 })]);
  assert.deepEqual(got, { id: 7 });
});

test('private channel: auth endpoint answering 403 gives pusher:subscription_error', TEST_OPTS, async () => {
  const a = client({ auth: '/deny' });
  await connected(a);
  const channel = a.subscribe(`private-denied-${RUN}`);
  const error = await waitFor(channel, 'pusher:subscription_error', WAIT_MS, 'pusher:subscription_succeeded');
  assert.equal(error.type, 'AuthError');
  assert.equal(error.status, 403);
  assert.equal(channel.subscribed, false);
});

test('private channel: the server refuses a signature made with the wrong secret', TEST_OPTS, async () => {
  // The refusal may arrive as a channel pusher:subscription_error (Soketi style), a
  // pusher:error with or without channel (Pusher/Reverb style), or a close; any will do.
  const a = client({ auth: '/forged' });
  await connected(a);
  const channel = a.subscribe(`private-forged-${RUN}`);
  const succeeded = record(channel, 'pusher:subscription_succeeded');
  const outcome = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no refusal within ${WAIT_MS} ms${recentLog()}`)), WAIT_MS);
    const done = (how) => (data) => {
      clearTimeout(timer);
      resolve({ how, data });
    };
    channel.bind('pusher:subscription_error', done('subscription_error'));
    a.bind('pusher:error', done('pusher:error'));
    a.connection.bind('disconnected', done('disconnected'));
    channel.bind('pusher:subscription_succeeded', () => {
      clearTimeout(timer);
      reject(new Error('subscription with a forged signature succeeded'));
    });
  });
  assert.ok(outcome.how, JSON.stringify(outcome));
  assert.equal(channel.subscribed, false);
  assert.deepEqual(succeeded, []);
});

test('client events: delivered to the other member, not echoed to the sender', TEST_OPTS, async () => {
  const a = client();
  const b = client();
  const name = `private-chat-${RUN}`;
  const chA = await subscribe(a, name);
  const chB = await subscribe(b, name);
  const seenByA = record(chA, 'client-typing');

  const [got, sent] = await Promise.all([waitFor(chB, 'client-typing'), chA.trigger('client-typing', { x: 1 })]);
  assert.equal(sent, true);
  assert.deepEqual(got, { x: 1 });
  await sleep(300);
  assert.deepEqual(seenByA, []);
});

test('client events: not relayed on public channels or from non-members', TEST_OPTS, async () => {
  const a = client();
  const b = client();
  const c = client();
  const publicName = `lobby-${RUN}`;
  const privateName = `private-members-${RUN}`;
  await subscribe(a, publicName);
  const pubB = await subscribe(b, publicName);
  const privB = await subscribe(b, privateName);
  await connected(c);
  const seenPublic = record(pubB, 'client-public');
  const seenPrivate = record(privB, 'client-outsider');

  a.channel(publicName).trigger('client-public', { nope: 1 }); // pusher-js allows it; the server must not relay
  c.send_event('client-outsider', { nope: 2 }, privateName); // c never subscribed to privateName
  await sleep(300);
  await flush(pubB);
  await flush(privB);
  assert.deepEqual(seenPublic, []);
  assert.deepEqual(seenPrivate, []);
});

test('presence channel: members, member_added/removed, client event metadata', TEST_OPTS, async () => {
  const name = `presence-room-${RUN}`;
  const ada = { id: '1', info: { name: 'Ada' } };
  const bob = { id: '2', info: { name: 'Bob' } };

  const a = client({ user: ada });
  const chA = await subscribe(a, name);
  assert.equal(chA.members.count, 1);
  assert.deepEqual(chA.members.me, ada);
  const added = record(chA, 'pusher:member_added');
  const removed = record(chA, 'pusher:member_removed');

  // B joins: A sees member_added with the info; B sees both members.
  const b = client({ user: bob });
  const [addedB, chB] = await Promise.all([waitFor(chA, 'pusher:member_added'), subscribe(b, name)]);
  assert.deepEqual(addedB, bob);
  assert.equal(chB.members.count, 2);
  assert.equal(chB.members.me.id, '2');
  assert.deepEqual(chB.members.me, bob);
  assert.deepEqual(chB.members.get('1'), ada);
  assert.equal(chA.members.count, 2);

  // A second connection of user 2 is not a new member.
  const b2 = client({ user: bob });
  const chB2 = await subscribe(b2, name);
  assert.equal(chB2.members.count, 2);
  assert.deepEqual(chB2.members.me, bob);
  await flush(chA);
  assert.equal(added.length, 1, `member_added events on A: ${JSON.stringify(added)}`);
  assert.equal(chA.members.count, 2);

  // Client events on presence carry the sender's user_id; only the sending socket is skipped.
  const seenByB = record(chB, 'client-hello');
  const [toA, toB2, sent] = await Promise.all([
    nextEvent(chA, 'client-hello'),
    nextEvent(chB2, 'client-hello'),
    chB.trigger('client-hello', { hi: 'there' }),
  ]);
  assert.equal(sent, true);
  assert.deepEqual(toA, { data: { hi: 'there' }, metadata: { user_id: '2' } });
  assert.deepEqual(toB2, { data: { hi: 'there' }, metadata: { user_id: '2' } });
  await sleep(300);
  assert.deepEqual(seenByB, []);

  // One of user 2's connections leaves: still a member.
  b.disconnect();
  await sleep(300);
  await flush(chA);
  assert.deepEqual(removed, []);
  assert.equal(chA.members.count, 2);

  // The last one leaves: exactly one member_removed.
  b2.disconnect();
  const gone = await waitFor(chA, 'pusher:member_removed');
  assert.deepEqual(gone, bob);
  await sleep(300);
  await flush(chA);
  assert.equal(removed.length, 1, `member_removed events on A: ${JSON.stringify(removed)}`);
  assert.equal(chA.members.count, 1);
  assert.equal(chA.members.get('2'), null);
});

test('HTTP API: channel info, users and channel list through the SDK', TEST_OPTS, async () => {
  const publicName = `info-${RUN}`;
  const presenceName = `presence-info-${RUN}`;
  const a = client({ user: { id: '1', info: { name: 'Ada' } } });
  const b = client({ user: { id: '2', info: { name: 'Bob' } } });
  const b2 = client({ user: { id: '2', info: { name: 'Bob' } } });
  await subscribe(a, publicName);
  await subscribe(b, publicName);
  for (const p of [a, b, b2]) await subscribe(p, presenceName);

  // Public channel: two subscriptions, no user_count.
  const pub = await api(`/channels/${publicName}`, { info: 'subscription_count' });
  assert.equal(pub.occupied, true);
  assert.equal(pub.subscription_count, 2);
  assert.equal(pub.user_count, undefined);

  // Presence channel: three connections, two users.
  const pres = await api(`/channels/${presenceName}`, { info: 'subscription_count,user_count' });
  assert.equal(pres.occupied, true);
  assert.equal(pres.subscription_count, 3);
  assert.equal(pres.user_count, 2);

  const { users } = await api(`/channels/${presenceName}/users`);
  assert.deepEqual(
    users.map((u) => u.id).sort(),
    ['1', '2'],
  );

  // Channel list filtered to presence channels.
  const list = await api('/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
  assert.deepEqual(list.channels[presenceName], { user_count: 2 });
  for (const channelName of Object.keys(list.channels)) assert.ok(channelName.startsWith('presence-'), channelName);

  // Channel list filtered to our public channel's prefix.
  const publicList = await api('/channels', { filter_by_prefix: `info-${RUN}` });
  assert.deepEqual(Object.keys(publicList.channels), [publicName]);

  // A channel nobody ever joined is not occupied; ours becomes unoccupied once everyone left.
  const never = await api(`/channels/never-${RUN}`);
  assert.equal(never.occupied, false);
  for (const p of [a, b, b2]) p.disconnect();
  await until(async () => (await api(`/channels/${publicName}`)).occupied === false, `${publicName} is vacated`);
  await until(async () => (await api(`/channels/${presenceName}`)).occupied === false, `${presenceName} is vacated`);
});
