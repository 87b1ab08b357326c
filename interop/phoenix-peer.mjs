// The official phoenix JS client (under Node with the `ws` transport) as a peer of the Rust
// test in room:lobby of switchboard serve: it joins as "js", waits to see "rust" in Presence,
// pushes user:typing (expects an ok reply) and a shout, and succeeds once it has received
// rust's shout and seen rust typing in the presence metas. Exits 0 on success.
// Env: SWITCHBOARD_HOST, SWITCHBOARD_PORT.
import { Socket, Presence } from 'phoenix';
import WebSocket from 'ws';

const host = process.env.SWITCHBOARD_HOST;
const port = process.env.SWITCHBOARD_PORT;
if (!host || !port) {
  console.error('missing SWITCHBOARD_HOST or SWITCHBOARD_PORT');
  process.exit(1);
}
const socket = new Socket(`ws://${host}:${port}/socket`, { transport: WebSocket, heartbeatIntervalMs: 1000 });
const fail = (why) => {
  console.error(`FAIL: ${why}`);
  process.exit(1);
};
setTimeout(() => fail('timed out'), 15000).unref();
socket.onError(() => console.error('socket error'));
socket.connect();

const channel = socket.channel('room:lobby', { username: 'js' });
const presence = new Presence(channel);
let greeted = false;
let gotShout = false;
let sawTyping = false;
let typingAcked = false;
const finish = () => {
  if (!gotShout || !sawTyping || !typingAcked) return;
  console.log(`OK: members ${JSON.stringify(presence.list((key) => key))}`);
  channel.leave();
  socket.disconnect(() => process.exit(0));
};
presence.onSync(() => {
  const members = presence.list((key, { metas }) => ({ key, typing: metas.some((m) => m.typing) }));
  const rust = members.find((m) => m.key === 'rust');
  if (rust && !greeted) {
    greeted = true;
    channel.push('user:typing', { username: 'js', typing: true })
      .receive('ok', () => {
        console.log('typing acknowledged');
        typingAcked = true;
        finish();
      })
      .receive('error', (e) => fail(`typing refused ${JSON.stringify(e)}`));
    channel.push('shout', { body: 'hi from js', channel: 'lobby', name: 'js' });
  }
  if (rust && rust.typing) {
    sawTyping = true;
    finish();
  }
});
channel.on('shout', (payload) => {
  if (payload.name === 'rust') {
    if (payload.body !== 'hi from rust') fail(`unexpected shout ${JSON.stringify(payload)}`);
    gotShout = true;
    finish();
  }
});
channel.join()
  .receive('ok', () => console.log('joined'))
  .receive('error', (e) => fail(`join refused ${JSON.stringify(e)}`))
  .receive('timeout', () => fail('join timed out'));
