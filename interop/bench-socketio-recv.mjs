// Receive-rate benchmark for socket.io-client (4.8.4) under Node, as a RealtimeX client:
// subscribe to `bench` and count `server-event` ticks from the switchboard-bench stream
// server (--protocol realtimex). Usage: node interop/bench-socketio-recv.mjs HOST:PORT EVENTS PAYLOAD
import { io } from 'socket.io-client';
import { eventCounter } from './bench-report.mjs';

const [addr, eventsArg, payload] = process.argv.slice(2);
const events = Number(eventsArg);
const socket = io(`http://${addr}`, { transports: ['websocket'], query: { api_key: 'bench' }, reconnection: false });
const counted = eventCounter('socket.io-client (Node)', events, payload);
let bytes = 0;
socket.on('connect', () => socket.emit('realtimex:subscribe', { channel: 'bench' }));
socket.on('server-event', ({ channel, event, data }) => {
  if (channel !== 'bench' || event !== 'tick') return;
  bytes += data.note.length;
  if (counted()) {
    socket.disconnect();
    process.exit(0);
  }
});
socket.on('connect_error', (error) => { console.error(`socket.io-client: ${error.message}`); process.exit(1); });
setTimeout(() => { console.error('socket.io-client bench timed out'); process.exit(1); }, 300000).unref();
