// The BullMQ side of `scripts/bench-queue --peers`: the same no-op jobs as `radioctl bench`, on the same
// private Redis. Per consumer count: enqueue JOBS jobs with 50 producers in flight (addBulk batches of
// 100), then drain them with one Worker of that concurrency, and print one JSON line like radioctl's:
// {"consumers", "jobs", "enqueue_per_s", "jobs_per_s"}. BullMQ's defaults are kept (completed jobs stay in
// Redis, as this queue keeps finished records).
//
//   node bench.mjs <redis port> <jobs> <consumers,…>
import { Queue, Worker } from 'bullmq';

const [port, jobsArg, countsArg] = process.argv.slice(2);
const jobs = Number(jobsArg);
const counts = String(countsArg || '1,50').split(',').map(Number);
if (!port || !Number.isInteger(jobs) || jobs <= 0 || counts.some((c) => !Number.isInteger(c) || c <= 0)) {
  console.error('usage: node bench.mjs <redis port> <jobs> <consumers,…>');
  process.exit(2);
}
const connection = { host: '127.0.0.1', port: Number(port) };

for (const consumers of counts) {
  const name = `bench-${Date.now()}-${consumers}`;
  const queue = new Queue(name, { connection });
  await queue.waitUntilReady();
  const batches = [];
  for (let i = 0; i < jobs; i += 100) {
    batches.push(Array.from({ length: Math.min(100, jobs - i) }, (_, k) => ({ name: 'noop', data: { i: i + k } })));
  }
  const enqueueStart = performance.now();
  for (let i = 0; i < batches.length; i += 50) {
    await Promise.all(batches.slice(i, i + 50).map((b) => queue.addBulk(b)));
  }
  const enqueueS = (performance.now() - enqueueStart) / 1000;

  const drainStart = performance.now();
  await new Promise((resolve, reject) => {
    let done = 0;
    const worker = new Worker(name, async () => {}, { connection, concurrency: consumers });
    worker.on('error', reject);
    worker.on('completed', () => {
      done += 1;
      if (done === jobs) {
        resolve();
        worker.close();
      }
    });
  });
  const drainS = (performance.now() - drainStart) / 1000;
  await queue.obliterate({ force: true });
  await queue.close();
  console.log(JSON.stringify({ consumers, jobs, enqueue_per_s: jobs / enqueueS, jobs_per_s: jobs / drainS }));
}
process.exit(0);
