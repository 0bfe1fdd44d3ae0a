// Adds jobs the way a Node application does, configured by the JSON in COMPAT_ENQUEUE_CONFIG:
//   { connectionString, schema, jobs: [{ identifier, payload, spec, via }] }
// `spec` uses graphile-worker's TaskSpec names (queueName, runAt as ISO text, priority, maxAttempts,
// jobKey, jobKeyMode, flags); `via` is "utils" (WorkerUtils.addJob) or "quick" (quickAddJob, which opens
// and closes its own pool). Prints the added jobs' ids as one JSON array.
import { pathToFileURL } from "node:url";

const { makeWorkerUtils, quickAddJob } = await import(pathToFileURL(process.env.GRAPHILE_WORKER_ENTRY).href);

const config = JSON.parse(process.env.COMPAT_ENQUEUE_CONFIG);
const shared = { connectionString: config.connectionString, schema: config.schema ?? undefined };

const toSpec = (spec = {}) => ({ ...spec, runAt: spec.runAt ? new Date(spec.runAt) : undefined });

const utils = await makeWorkerUtils(shared);
const ids = [];
try {
  for (const { identifier, payload, spec, via } of config.jobs) {
    const job = via === "quick"
      ? await quickAddJob(shared, identifier, payload, toSpec(spec))
      : await utils.addJob(identifier, payload, toSpec(spec));
    ids.push(String(job.id));
  }
} finally {
  await utils.release();
}
process.stdout.write(JSON.stringify(ids) + "\n");
