// Receive-rate benchmark for pusher-js under Node: count `tick` events from the
// switchboard-bench stream server. Usage: node interop/bench-recv.mjs HOST:PORT EVENTS PAYLOAD
import Pusher from 'pusher-js';
import { eventCounter } from './bench-report.mjs';

const [addr, eventsArg, payload] = process.argv.slice(2);
const [host, port] = addr.split(':');
const events = Number(eventsArg);
const pusher = new Pusher('bench', {
  cluster: '', wsHost: host, wsPort: Number(port), forceTLS: false, enabledTransports: ['ws'],
});
const channel = pusher.subscribe('bench');
const counted = eventCounter('pusher-js (Node)', events, payload);
let bytes = 0;
channel.bind('tick', (data) => {
  bytes += data.note.length;
  if (counted()) {
    pusher.disconnect();
    process.exit(0);
  }
});
setTimeout(() => { console.error('pusher-js bench timed out'); process.exit(1); }, 300000).unref();
