// Receive-rate benchmark for pusher-js under Node: count `tick` events from the
// switchboard-bench stream server. Usage: node interop/bench-recv.mjs HOST:PORT EVENTS PAYLOAD
import Pusher from 'pusher-js';

const [addr, eventsArg, payload] = process.argv.slice(2);
const [host, port] = addr.split(':');
const events = Number(eventsArg);
const pusher = new Pusher('bench', {
  cluster: '', wsHost: host, wsPort: Number(port), forceTLS: false, enabledTransports: ['ws'],
});
const channel = pusher.subscribe('bench');
let received = -1; // the first event starts the clock
let started;
let cpu0;
let bytes = 0;
channel.bind('tick', (data) => {
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
    console.log(`${'pusher-js (Node)'.padEnd(22)} payload=${String(payload).padEnd(5)} events=${String(events).padEnd(8)} ${(events / secs).toFixed(0).padStart(10)} events/s  ${(cpuSecs / (events / 1e6)).toFixed(2).padStart(6)} CPU s per million  peak RSS ${String(rss).padStart(7)} KiB`);
    pusher.disconnect();
    process.exit(0);
  }
});
setTimeout(() => { console.error('pusher-js bench timed out'); process.exit(1); }, 300000).unref();
