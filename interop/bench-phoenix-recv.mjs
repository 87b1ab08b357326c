// Receive-rate benchmark for the official phoenix JS client under Node (ws transport): count
// `tick` broadcasts on room:bench from the switchboard-bench phoenix stream server.
// Usage: node interop/bench-phoenix-recv.mjs HOST:PORT EVENTS PAYLOAD
import { Socket } from 'phoenix';
import WebSocket from 'ws';

const [addr, eventsArg, payload] = process.argv.slice(2);
const events = Number(eventsArg);
const socket = new Socket(`ws://${addr}/socket`, { transport: WebSocket });
socket.connect();
const channel = socket.channel('room:bench', {});
let received = -1;
let started;
let cpu0;
let bytes = 0;
channel.on('tick', (data) => {
  bytes += data.note.length;
  received += 1;
  if (received === 0) {
    started = process.hrtime.bigint();
    cpu0 = process.cpuUsage();
    return;
  }
  if (received === events) {
    const secs = Number(process.hrtime.bigint() - started) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    const cpuSecs = (cpu.user + cpu.system) / 1e6;
    const rss = process.resourceUsage().maxRSS;
    console.log(`${'phoenix.js (Node)'.padEnd(22)} payload=${String(payload).padEnd(5)} events=${String(events).padEnd(8)} ${(events / secs).toFixed(0).padStart(10)} events/s  ${(cpuSecs / (events / 1e6)).toFixed(2).padStart(6)} CPU s per million  peak RSS ${String(rss).padStart(7)} KiB`);
    process.exit(0);
  }
});
channel.join();
setTimeout(() => { console.error('phoenix.js bench timed out'); process.exit(1); }, 300000).unref();
