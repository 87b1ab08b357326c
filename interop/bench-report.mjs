// Shared by the Node receive-rate benchmarks: count events, start the clock at the first one,
// and print one report line in the columns of `switchboard-bench recv` (read by
// bench/medians.sh).

/** Returns a function to call once per event; it returns true after `events` were counted. */
export function eventCounter(label, events, payload) {
  let received = -1; // the first event starts the clock
  let started;
  let cpu0;
  return () => {
    received += 1;
    if (received === 0) {
      started = process.hrtime.bigint();
      cpu0 = process.cpuUsage();
      return false;
    }
    if (received < events) return false;
    const secs = Number(process.hrtime.bigint() - started) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    const cpuSecs = (cpu.user + cpu.system) / 1e6;
    const rss = process.resourceUsage().maxRSS;
    console.log(`${label.padEnd(22)} payload=${String(payload).padEnd(5)} events=${String(events).padEnd(8)} ${(events / secs).toFixed(0).padStart(10)} events/s  ${(cpuSecs / (events / 1e6)).toFixed(2).padStart(6)} CPU s per million  peak RSS ${String(rss).padStart(7)} KiB`);
    return true;
  };
}
