// Receive-rate benchmark for the official phoenix JS client under Node (ws transport): count
// `tick` broadcasts on room:bench from the switchboard-bench phoenix stream server.
// Usage: node interop/bench-phoenix-recv.mjs HOST:PORT EVENTS PAYLOAD
import { Socket } from 'phoenix';
import WebSocket from 'ws';
import { eventCounter } from './bench-report.mjs';

const [addr, eventsArg, payload] = process.argv.slice(2);
const events = Number(eventsArg);
const socket = new Socket(`ws://${addr}/socket`, { transport: WebSocket });
socket.connect();
const channel = socket.channel('room:bench', {});
const counted = eventCounter('phoenix.js (Node)', events, payload);
let bytes = 0;
channel.on('tick', (data) => {
  bytes += data.note.length;
  if (counted()) process.exit(0);
});
channel.join();
setTimeout(() => { console.error('phoenix.js bench timed out'); process.exit(1); }, 300000).unref();
