// Helpers both peer benches (nats/bench.mjs, rabbitmq/bench.mjs) use: a
// sleep, a percentile, CPU seconds of the servers and of this process, and a
// bounded retry for a cluster still settling.
import { readFileSync } from 'node:fs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The q-quantile of `arr` (nearest rank), or null for no samples. */
export const pct = (arr, q) => {
  if (!arr.length) return null;
  const s = Array.from(arr).sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

const CLK = 100; // USER_HZ on Linux

/** User + system CPU seconds of the processes `pids`, from /proc. */
export const serverCpuSec = (pids) => pids.reduce((acc, pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return acc + (Number(f[11]) + Number(f[12])) / CLK; // utime, stime
}, 0);

/** User + system CPU seconds of this process. */
export const myCpuSec = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

/** `fn` until it resolves, every 250 ms, for at most `seconds`; then its last error, named `what`. */
export async function retry(what, fn, seconds = 30) {
  const end = performance.now() + seconds * 1000;
  for (;;) {
    try { return await fn(); } catch (e) {
      if (performance.now() > end) throw new Error(`${what}: ${e.message}`);
      await sleep(250);
    }
  }
}
