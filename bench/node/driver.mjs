// The Node graphile-worker side of the benchmark: the same four commands as the Python drivers
// (bench/drivers/cli.py), speaking the same JSON-lines protocol on stdout (bench/protocol.py).
//
//   node driver.mjs migrate        --dsn URL --schema S
//   node driver.mjs enqueue-bulk   --dsn URL --schema S --jobs N --batch B
//   node driver.mjs enqueue-single --dsn URL --schema S --jobs N
//   node driver.mjs enqueue-serial --dsn URL --schema S --jobs N --gap-ms G [--fast 0]
//   node driver.mjs work           --dsn URL --schema S --concurrency C [--expect N] [--lanes 0]
//
// graphile-worker has no lanes. The nearest fair equivalent, for the Fast-lane phase (--lanes 1 and
// enqueue-serial --fast 1), is what a Node application would do: two runners in one process, each with
// its own concurrency, one for a "fast" task and one for the bulk "noop" task. A runner fetches only
// the tasks it knows, so a busy bulk runner cannot hold a fast job, as the backfill runner's lanes.
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const worker = await import(pathToFileURL(process.env.GRAPHILE_WORKER_ENTRY).href);

const { positionals, values: args } = parseArgs({
  allowPositionals: true,
  options: {
    dsn: { type: "string" },
    schema: { type: "string" },
    jobs: { type: "string", default: "0" },
    batch: { type: "string", default: "1000" },
    "gap-ms": { type: "string", default: "5" },
    fast: { type: "string", default: "0" },
    lanes: { type: "string", default: "0" },
    concurrency: { type: "string", default: "24" },
    expect: { type: "string", default: "0" },
  },
});

// Epoch milliseconds with sub-millisecond resolution: Date.now() only has whole milliseconds, which is
// too coarse for latencies of a few milliseconds. Python's time.time() reads the same wall clock.
const nowMs = () => performance.timeOrigin + performance.now();

const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

// Per-job "Completed task" lines are logged at info level; printing 100,000 of them would measure the
// terminal, not the queue. Warnings and errors still reach stderr, where the harness keeps them.
const quietLogger = new worker.Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`[${level}] ${message}`);
});

const shared = { connectionString: args.dsn, schema: args.schema, logger: quietLogger };

async function migrate() {
  await worker.runMigrations(shared);
  emit("result", {});
}

async function withUtils(body) {
  const utils = await worker.makeWorkerUtils(shared);
  try {
    // Connect before timing, as the Python drivers do, so the figure is enqueueing, not connecting.
    await utils.withPgClient((client) => client.query("select 1"));
    await body(utils);
  } finally {
    await utils.release();
  }
}

async function enqueueBulk() {
  const total = Number(args.jobs);
  const batch = Number(args.batch);
  await withUtils(async (utils) => {
    const started = nowMs();
    for (let first = 0; first < total; first += batch) {
      const specs = [];
      for (let n = first; n < Math.min(first + batch, total); n++) specs.push({ identifier: "noop", payload: { n } });
      await utils.addJobs(specs);
    }
    emit("result", { seconds: (nowMs() - started) / 1000 });
  });
}

async function enqueueSingle() {
  const total = Number(args.jobs);
  await withUtils(async (utils) => {
    const started = nowMs();
    for (let n = 0; n < total; n++) await utils.addJob("noop", { n });
    emit("result", { seconds: (nowMs() - started) / 1000 });
  });
}

async function enqueueSerial() {
  const total = Number(args.jobs);
  const gap = Number(args["gap-ms"]);
  const task = args.fast === "1" ? "fast" : "noop";
  await withUtils(async (utils) => {
    for (let n = 0; n < total; n++) {
      await utils.addJob(task, { n, t: nowMs() });
      await sleep(gap);
    }
    emit("result", {});
  });
}

// user + system CPU of this process in seconds (every thread: libuv's pool included).
const cpuSeconds = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
};

async function work() {
  const expect = Number(args.expect);
  const latencies = [];
  let count = 0;
  let stopping = null;
  let runners = [];
  let cpuAtReady = 0;
  const stop = () => {
    // As in the Python drivers: CPU is counted up to the stop signal, not over the shutdown.
    const cpuAtStop = cpuSeconds();
    stopping ??= (async () => {
      await Promise.all(runners.map((runner) => runner.stop()));
      emit("result", {
        count,
        latencies_ms: latencies,
        cpu_s: cpuAtStop - cpuAtReady,
        peak_rss_kib: process.resourceUsage().maxRSS, // kilobytes, like ru_maxrss on Linux
      });
      process.exit(0);
    })();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  const noop = async (payload) => {
    const started = nowMs();
    count++;
    if (payload && typeof payload.t === "number") {
      latencies.push(started - payload.t);
      // Only stamped jobs count towards --expect, as in the Python drivers.
      if (expect > 0 && latencies.length >= expect) setImmediate(stop);
    }
  };
  cpuAtReady = cpuSeconds();
  // "ready" is sent before run(): the worker's own start-up (pool, schema check, LISTEN) is timed.
  emit("ready", { at_ms: nowMs() });
  const start = (taskList) =>
    worker.run({
      ...shared,
      concurrency: Number(args.concurrency),
      noHandleSignals: true,
      taskList,
      preset: {
        worker: {
          localQueue: { size: 500 },
          completeJobBatchDelay: 0,
          failJobBatchDelay: 0,
          preparedStatements: true,
        },
      },
    });
  const lanes = args.lanes === "1" ? [{ fast: noop }, { noop }] : [{ noop }];
  runners = await Promise.all(lanes.map(start));
  emit("started", { at_ms: nowMs() });
  await Promise.all(runners.map((runner) => runner.promise));
}

const commands = {
  migrate,
  "enqueue-bulk": enqueueBulk,
  "enqueue-single": enqueueSingle,
  "enqueue-serial": enqueueSerial,
  work,
};
const command = commands[positionals[0]];
if (!command) {
  console.error(`unknown command ${positionals[0]}; expected one of ${Object.keys(commands).join(", ")}`);
  process.exit(2);
}
try {
  await command();
} catch (error) {
  console.error(error?.stack ?? String(error));
  process.exit(1);
}
