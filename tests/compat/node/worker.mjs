// A graphile-worker process for the compat tests, configured by the JSON in COMPAT_WORKER_CONFIG:
//   { connectionString, schema, mode: "run" | "once", concurrency, pollInterval }
// Its tasks report what they saw into public.compat_ledger, the table the Python side reads back.
// In "run" mode it prints one JSON line {"event":"ready"} once the pool is started, and shuts down
// gracefully when its stdin closes, so the parent needs no signals to stop it.
import { pathToFileURL } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";

const { run, runOnce, Logger } = await import(pathToFileURL(process.env.GRAPHILE_WORKER_ENTRY).href);

const config = JSON.parse(process.env.COMPAT_WORKER_CONFIG);

// Only warnings and errors, on stderr: stdout carries the protocol lines the parent parses.
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") {
    process.stderr.write(`[graphile-worker ${level}] ${message}\n`);
  }
});

// clock_timestamp(), not now(): the start and end of one job fall in different statements and must be
// comparable with the other runner's, so both sides take the database's wall clock.
const START = `
  insert into public.compat_ledger (job_id, runner, task, payload, attempt, job_queue_id, job_key, started_at)
  values ($1::bigint, 'node', $2::text, $3::jsonb, $4::int, $5::int, $6::text, clock_timestamp())
  returning seq`;
const END = "update public.compat_ledger set ended_at = clock_timestamp() where seq = $1::bigint";

const taskList = {
  async record(payload, helpers) {
    const { job } = helpers;
    const { rows } = await helpers.query(START, [
      job.id, job.task_identifier, JSON.stringify(payload), job.attempts, job.job_queue_id, job.key,
    ]);
    if (payload && typeof payload.sleep_ms === "number") {
      await sleep(payload.sleep_ms);
    }
    await helpers.query(END, [rows[0].seq]);
  },
  async fail() {
    throw new Error("boom");
  },
};

const options = {
  connectionString: config.connectionString,
  schema: config.schema ?? undefined,
  concurrency: config.concurrency ?? 1,
  pollInterval: config.pollInterval ?? 2000,
  noHandleSignals: true,
  logger,
  taskList,
};

if (config.mode === "once") {
  await runOnce({ ...options, concurrency: 1 });
} else {
  const runner = await run(options);
  process.stdout.write(JSON.stringify({ event: "ready" }) + "\n");
  process.stdin.on("end", () => {
    runner.stop().catch((error) => {
      process.stderr.write(`stop failed: ${error}\n`);
      process.exitCode = 1;
    });
  });
  process.stdin.resume();
  await runner.promise;
}
