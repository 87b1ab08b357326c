// A realtime-pubsub-client peer for the Rust gateway client's interop test: it answers the
// Rust client's requests on secure/inbound (messageType "rust-asks"), and asks the Rust
// client a question of its own on topic SWITCHBOARD_TOPIC (messageType "js-asks"), waiting
// for the reply. Prints READY once subscribed, and "OK: <reply>" at the end; exits 0 on
// success, 1 otherwise.
// Env: SWITCHBOARD_HOST, SWITCHBOARD_PORT, SWITCHBOARD_APP_ID, SWITCHBOARD_APP_SECRET,
//      SWITCHBOARD_TOPIC.
import WebSocket from 'ws';
import jwt from 'jsonwebtoken';
import { RealtimeClient } from 'realtime-pubsub-client';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`missing ${name}`);
    process.exit(1);
  }
  return value;
};
const [host, port, appId, secret, topic] = ['SWITCHBOARD_HOST', 'SWITCHBOARD_PORT', 'SWITCHBOARD_APP_ID', 'SWITCHBOARD_APP_SECRET', 'SWITCHBOARD_TOPIC'].map(env);
const fail = (why) => {
  console.error(`FAIL: ${why}`);
  process.exit(1);
};
setTimeout(() => fail('timed out'), 15000).unref();

const token = () => jwt.sign({
  sub: 'js-peer',
  permissions: ['realtime:subscriber:read:topic:secure/inbound', 'realtime:publisher:write:topic:*'],
}, secret, { algorithm: 'HS256', expiresIn: 60 });
const client = new RealtimeClient({
  websocketOptions: { WebSocket, urlProvider: async () => `ws://${host}:${port}/apps/${appId}?access_token=${token()}`, maxRetries: 3 },
});
client.on('secure/inbound.rust-asks', (message, reply) => {
  reply({ from: 'js', got: message.data.payload }, 'ok');
});
client.on('error', (e) => fail(`client error: ${e}`));
client.once('session.started', async () => {
  client.subscribeRemoteTopic('secure/inbound');
  await client.wait(200);
  console.log('READY');
  // Ask the Rust client, which answers on our priv/ topic. Both waiters before any await.
  const waitFor = client.publish(topic, { question: 'who are you?' }, { messageType: 'js-asks' });
  const ack = waitFor.waitForAck(10000);
  const reply = waitFor.waitForReply(10000);
  try {
    await ack;
    const [response] = await reply;
    console.log(`OK: ${JSON.stringify(response)}`);
    client.disconnect();
    process.exit(0);
  } catch (e) {
    fail(`no reply from the Rust client: ${e}`);
  }
});
await client.connect();
