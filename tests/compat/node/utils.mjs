// Calls graphile-worker's WorkerUtils the way a Node application does, configured by the JSON in
// COMPAT_UTILS_CONFIG: { connectionString, schema, ops: [...] }. Each op is one of
//   { op: "addJob", identifier, payload, spec, via: "utils" | "quick" }   -> the job's id
//   { op: "addJobs", specs: [{ identifier, payload, ...spec }], preserveRunAt } -> the ids
//   { op: "completeJobs" | "permanentlyFailJobs", refs, reason }          -> ids of the rows returned
//   { op: "rescheduleJobs", refs, options }                               -> ids of the rows returned
//   { op: "forceUnlockWorkers", workerIds }                               -> null
//   { op: "sql", text, values }                                           -> the rows (remove_job has
//                                                                            no WorkerUtils method)
// `spec` uses TaskSpec names (queueName, runAt as ISO text, priority, maxAttempts, jobKey, jobKeyMode,
// flags); `refs` are indexes of earlier ops whose (single) id to pass. An op that throws yields
// { error: <SQLSTATE or message> } and the script carries on, so error codes can be compared too.
// Prints the results, one per op, as a JSON array.
import { pathToFileURL } from "node:url";

const { makeWorkerUtils, quickAddJob } = await import(pathToFileURL(process.env.GRAPHILE_WORKER_ENTRY).href);

const config = JSON.parse(process.env.COMPAT_UTILS_CONFIG);
const shared = { connectionString: config.connectionString, schema: config.schema ?? undefined };

const withDates = (spec = {}) => ({ ...spec, runAt: spec.runAt ? new Date(spec.runAt) : undefined });
const idsOf = (rows) => rows.map((row) => String(row.id));

const utils = await makeWorkerUtils(shared);
const results = [];
const refIds = (refs) => refs.map((ref) => results[ref]);

async function apply(op) {
  switch (op.op) {
    case "addJob": {
      const job = op.via === "quick"
        ? await quickAddJob(shared, op.identifier, op.payload, withDates(op.spec))
        : await utils.addJob(op.identifier, op.payload, withDates(op.spec));
      return String(job.id);
    }
    case "addJobs":
      return idsOf(await utils.addJobs(op.specs.map(withDates), op.preserveRunAt));
    case "completeJobs":
      return idsOf(await utils.completeJobs(refIds(op.refs)));
    case "permanentlyFailJobs":
      return idsOf(await utils.permanentlyFailJobs(refIds(op.refs), op.reason));
    case "rescheduleJobs":
      return idsOf(await utils.rescheduleJobs(refIds(op.refs), withDates(op.options)));
    case "forceUnlockWorkers":
      await utils.forceUnlockWorkers(op.workerIds);
      return null;
    case "sql":
      return (await utils.withPgClient((client) => client.query(op.text, op.values ?? []))).rows;
    default:
      throw new Error(`unknown op ${op.op}`);
  }
}

try {
  for (const op of config.ops) {
    try {
      results.push(await apply(op));
    } catch (error) {
      results.push({ error: error.code ?? String(error.message ?? error) });
    }
  }
} finally {
  await utils.release();
}
process.stdout.write(JSON.stringify(results) + "\n");
