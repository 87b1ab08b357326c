// Interop test: the official Realtime Pub/Sub JS client (realtime-pubsub-client 1.0.0, with
// `ws` as its WebSocket on Node 20) against the gateway endpoint of `switchboard serve`.
// Tokens are minted with `jsonwebtoken` 9.0.3, and a token minted by our Rust code is
// verified by it, so both sides' HS* JWTs are checked against a real JWT library.
//
// Run (from the repository root, with a server already listening):
//   SWITCHBOARD_HOST=127.0.0.1 SWITCHBOARD_PORT=6001 SWITCHBOARD_APP_ID=1000 \
//   SWITCHBOARD_APP_SECRET=app-secret SWITCHBOARD_RUST_TOKEN=<jwt> \
//   node --test --test-reporter=spec interop/gateway.test.mjs

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import jwt from 'jsonwebtoken';
import { RealtimeClient } from 'realtime-pubsub-client';

const REQUIRED = ['SWITCHBOARD_HOST', 'SWITCHBOARD_PORT', 'SWITCHBOARD_APP_ID', 'SWITCHBOARD_APP_SECRET', 'SWITCHBOARD_RUST_TOKEN'];
const missing = REQUIRED.filter((name) => !process.env[name]);
if (missing.length > 0) {
  throw new Error(`gateway interop test: missing environment variable(s): ${missing.join(', ')}`);
}
const { SWITCHBOARD_HOST: HOST, SWITCHBOARD_PORT: PORT, SWITCHBOARD_APP_ID: APP_ID, SWITCHBOARD_APP_SECRET: SECRET } = process.env;
const WAIT_MS = 5000;
const TEST_OPTS = { timeout: 20000 };
const RUN = `${process.pid}-${Date.now().toString(36)}`;
const clients = [];

function token(claims, options = {}) {
  return jwt.sign(claims, SECRET, { algorithm: 'HS256', expiresIn: 60, ...options });
}

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A connected client: resolves with it and its connection info once `session.started` fires.
async function connect(claims, extra = {}) {
  const client = new RealtimeClient({
    websocketOptions: {
      // Re-run on every connect, as the SDK documents: a fresh token each time.
      urlProvider: async () => `ws://${HOST}:${PORT}/apps/${APP_ID}?access_token=${token(claims)}`,
      WebSocket,
      maxRetries: extra.maxRetries ?? 3,
    },
  });
  clients.push(client);
  const started = new Promise((resolve) => client.once('session.started', resolve));
  await client.connect();
  const info = await within(started, 'session.started');
  return { client, info };
}

function next(client, event) {
  return within(new Promise((resolve) => client.once(event, (...args) => resolve(args))), event);
}

after(() => {
  for (const client of clients) client.disconnect();
});

test('a token minted by switchboard verifies with jsonwebtoken', TEST_OPTS, () => {
  const claims = jwt.verify(process.env.SWITCHBOARD_RUST_TOKEN, SECRET, { algorithms: ['HS384'] });
  assert.equal(claims.sub, 'minted-by-rust');
  assert.deepEqual(claims.permissions, ['realtime:publisher:write:topic:*']);
});

test('session.started carries the typed connection info', TEST_OPTS, async () => {
  const { info } = await connect({ sub: 'ada' });
  assert.match(info.id, /^[0-9a-f]{12}$/);
  assert.equal(info.appId, APP_ID);
  assert.equal(info.remoteAddress, '127.0.0.1');
});

test('publish with an ack, delivered to a wildcard listener and echoed to the sender', TEST_OPTS, async () => {
  const topic = `chat-${RUN}`;
  const { client: publisher } = await connect({ sub: 'pub', permissions: ['realtime:publisher:write:topic:chat-*'] });
  const { client: reader } = await connect({ sub: 'reader' });
  publisher.subscribeRemoteTopic(topic);
  reader.subscribeRemoteTopic(topic);
  await reader.wait(200); // subscribes have no confirmation in this protocol
  const delivered = next(reader, `${topic}.*`);
  const echoed = next(publisher, `${topic}.text-message`);
  const waitFor = publisher.publish(topic, { text: 'hello' }, { messageType: 'text-message' });
  await within(waitFor.waitForAck(WAIT_MS + 1000), 'the ack');
  const [message] = await delivered;
  assert.equal(message.topic, topic);
  assert.equal(message.messageType, 'text-message');
  assert.deepEqual(message.data.payload, { text: 'hello' });
  assert.equal(message.compression, false);
  const [echo] = await echoed;
  assert.deepEqual(echo.data.payload, { text: 'hello' });
});

test('send reaches a backend on secure/inbound, which replies; the caller gets the reply', TEST_OPTS, async () => {
  const { client: backend } = await connect({
    sub: 'backend',
    permissions: ['realtime:subscriber:read:topic:secure/inbound', 'realtime:publisher:write:topic:priv/*'],
  });
  backend.subscribeRemoteTopic('secure/inbound');
  await backend.wait(200);
  backend.on('secure/inbound.gettime', (message, reply) => {
    reply({ time: 'now', asked: message.data.payload }, 'ok');
  });
  const { client: caller } = await connect({ sub: 'caller', permissions: [] });
  const waitFor = caller.send({ tz: 'UTC' }, { messageType: 'gettime' });
  // Both waiters before either settles: `ws` may hand the ack and the reply over in one
  // turn of the event loop, and a waiter registered after the ack resolves would miss the
  // reply (the SDK race the gateway issue describes; our client registers before sending).
  const ack = waitFor.waitForAck(WAIT_MS + 1000);
  const reply = waitFor.waitForReply(WAIT_MS + 1000);
  await within(ack, 'the ack of send');
  const [response] = await within(reply, 'the reply');
  assert.equal(response.status, 'ok');
  assert.deepEqual(response.data, { time: 'now', asked: { tz: 'UTC' } });
});

test('presence events reach the backend', TEST_OPTS, async () => {
  const { client: backend } = await connect({ sub: 'watcher', scope: 'realtime:subscriber:read:topic:secure/*' });
  backend.subscribeRemoteTopic('secure/inbound');
  await backend.wait(200);
  const seen = [];
  backend.on('secure/inbound.presence', (message) => seen.push(message.data));
  const { client: device, info } = await connect({ sub: `device-${RUN}` });
  device.disconnect();
  await within(
    (async () => {
      while (!seen.some((d) => d.client.connectionId === info.id && d.payload.status === 'disconnected')) {
        await backend.wait(20);
      }
    })(),
    'connected and disconnected presence',
  );
  const mine = seen.filter((d) => d.client.connectionId === info.id).map((d) => d.payload.status);
  assert.deepEqual(mine, ['connected', 'disconnected']);
});

test('a compressed message arrives flagged as compressed (a binary frame)', TEST_OPTS, async () => {
  const topic = `zip-${RUN}`;
  const { client } = await connect({ permissions: ['realtime:publisher:write:topic:*'] });
  client.subscribeRemoteTopic(topic);
  await client.wait(200);
  const received = next(client, `${topic}.**`);
  client.publish(topic, { big: 'x'.repeat(1000) }, { compress: true });
  const [message] = await received;
  assert.equal(message.compression, true);
  assert.equal(message.data.payload.big.length, 1000);
});

test('a forbidden secure subscribe closes with the reason the SDK tests expect', TEST_OPTS, async () => {
  const { client } = await connect({ permissions: [] }, { maxRetries: 0 });
  const closed = next(client, 'close');
  client.subscribeRemoteTopic('secure/tasks');
  const [event] = await closed;
  assert.equal(event.reason, 'Subscription to secure topic is forbidden!');
  assert.equal(event.code, 1008);
});
