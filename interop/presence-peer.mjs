// A pusher-js peer for the Rust client's interop test: joins a presence channel as user
// "js", waits to see the member "rust", whispers `client-hello`, and waits for the Rust
// client's `client-hello` (with metadata.user_id "rust"). Exits 0 on success, 1 otherwise.
// Env: SWITCHBOARD_HOST, SWITCHBOARD_PORT, SWITCHBOARD_APP_KEY, SWITCHBOARD_APP_SECRET,
//      SWITCHBOARD_CHANNEL (a presence- channel).
import Pusher from 'pusher-js';
import PusherServer from 'pusher';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`missing ${name}`);
    process.exit(1);
  }
  return value;
};
const [host, port, key, secret, channelName] = [
  'SWITCHBOARD_HOST', 'SWITCHBOARD_PORT', 'SWITCHBOARD_APP_KEY', 'SWITCHBOARD_APP_SECRET', 'SWITCHBOARD_CHANNEL',
].map(env);

const signer = new PusherServer({ appId: '1', key, secret, host, port, useTLS: false });
const pusher = new Pusher(key, {
  cluster: '',
  wsHost: host,
  wsPort: Number(port),
  forceTLS: false,
  enabledTransports: ['ws'],
  channelAuthorization: {
    // The official customHandler hook, signing with the official server SDK.
    customHandler: ({ socketId, channelName: name }, callback) => {
      callback(null, signer.authorizeChannel(socketId, name, { user_id: 'js', user_info: { name: 'pusher-js' } }));
    },
  },
});

const fail = (why) => {
  console.error(`FAIL: ${why}`);
  pusher.disconnect();
  process.exit(1);
};
setTimeout(() => fail('timed out'), 15000).unref();

const channel = pusher.subscribe(channelName);
let saidHello = false;
const sayHello = () => {
  if (saidHello) return;
  saidHello = true;
  channel.trigger('client-hello', { from: 'js' });
};
channel.bind('pusher:subscription_error', (e) => fail(`subscription_error ${JSON.stringify(e)}`));
channel.bind('pusher:subscription_succeeded', (members) => {
  console.log(`subscribed as ${members.me.id}; members: ${JSON.stringify(Object.keys(members.members))}`);
  if (members.get('rust')) sayHello();
});
channel.bind('pusher:member_added', (member) => {
  console.log(`member_added ${member.id}`);
  if (member.id === 'rust') sayHello();
});
channel.bind('client-hello', (data, metadata) => {
  if (data.from !== 'rust' || metadata.user_id !== 'rust') fail(`unexpected hello ${JSON.stringify(data)} ${JSON.stringify(metadata)}`);
  if (!channel.members.get('rust')) fail('rust is not in the member list');
  console.log(`OK: hello from ${metadata.user_id}; members: ${channel.members.count}`);
  // Give our own whisper time to leave before closing.
  setTimeout(() => {
    pusher.disconnect();
    process.exit(0);
  }, 200);
});
