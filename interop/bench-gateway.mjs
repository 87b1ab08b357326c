// Gateway benchmark with the official JS client (realtime-pubsub-client 1.0.0 on `ws`): the
// same two runs as `switchboard-bench gateway`: publish-to-receive rate (one publisher, one
// receiver, nothing awaited per publish) and ack round trips (publish, await the ack).
// Usage: node interop/bench-gateway.mjs HOST:PORT APP_ID SECRET MESSAGES ACKS PAYLOAD
import WebSocket from 'ws';
import jwt from 'jsonwebtoken';
import { RealtimeClient } from 'realtime-pubsub-client';

const [addr, appId, secret, messagesArg, acksArg, payloadArg] = process.argv.slice(2);
const [messages, acks, payload] = [Number(messagesArg), Number(acksArg), Number(payloadArg)];
const filler = 'x'.repeat(Math.max(0, payload - 20));

async function connect(sub) {
  const token = jwt.sign({ sub, permissions: ['realtime:publisher:write:topic:*'] }, secret, { algorithm: 'HS256', expiresIn: 600 });
  const client = new RealtimeClient({ websocketOptions: { WebSocket, urlProvider: async () => `ws://${addr}/apps/${appId}?access_token=${token}`, maxRetries: 0 } });
  const started = new Promise((resolve) => client.once('session.started', resolve));
  await client.connect();
  await started;
  return client;
}

const publisher = await connect('publisher');
const receiver = await connect('receiver');
receiver.subscribeRemoteTopic('bench');
await receiver.wait(300);
let received = 0;
let bytes = 0;
const done = new Promise((resolve) => {
  receiver.on('bench.*', (message) => {
    bytes += JSON.stringify(message.data.payload).length;
    received += 1;
    if (received === messages) resolve();
  });
});
const started = process.hrtime.bigint();
for (let n = 0; n < messages; n++) {
  publisher.publish('bench', { n, f: filler });
  // Yield now and then so the receiver's socket is read while the publisher sends (JS
  // would otherwise queue every frame before reading any).
  if (n % 1000 === 999) await new Promise((resolve) => setImmediate(resolve));
}
await done;
const secs = Number(process.hrtime.bigint() - started) / 1e9;
console.log(`realtime-pubsub-client rate payload=${String(payload).padEnd(5)} messages=${String(received).padEnd(8)} ${Math.round(received / secs).toString().padStart(10)} msgs/s`);
const rtts = [];
for (let n = 0; n < acks; n++) {
  const sent = process.hrtime.bigint();
  await publisher.publish('acks', { n, f: filler }).waitForAck(30000);
  rtts.push(Number(process.hrtime.bigint() - sent) / 1e3);
}
rtts.sort((a, b) => a - b);
const at = (q) => rtts[Math.floor((rtts.length - 1) * q)];
const total = rtts.reduce((a, b) => a + b, 0) / 1e6;
console.log(`realtime-pubsub-client ack payload=${String(payload).padEnd(5)} acks=${String(rtts.length).padEnd(8)} ${Math.round(rtts.length / total).toString().padStart(10)} acks/s  p50 ${Math.round(at(0.5))} µs  p99 ${Math.round(at(0.99))} µs`);
publisher.disconnect();
receiver.disconnect();
process.exit(0);
