/**
 * More fixed seeds of the simulation (tests/sim), beside tests/sim_test.ts so the two files
 * run on two cores: a sweep of seeds with the default mix and with crashes among many sends
 * (every second one), and the seeds of the seed loop whose failures were fixed. Every
 * invariant must hold (0 violations). About 3,030 simulated steps.
 *
 * @module
 */
import { type Run, simTest } from "./sim/runs.ts";

const SWEEP: Run[] = [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23].map((seed) => ({
  seed,
  steps: 150,
  clients: 6,
  mode: "memory",
  ...(seed % 2 === 0 ? { args: ["--weight", "crash=20,send=40"] } : {}),
}));

const REGRESSIONS: Run[] = [
  // a send right after a change kept while the server did not answer was refused "a group
  // change is still pending" although the server was back (8015, a product bug)
  { seed: 8015, steps: 30, clients: 12, mode: "memory" },
  // a member in doubt after its own leave whose client rightly says it is gone (5011, 5039)
  { seed: 5011, steps: 150, clients: 9, mode: "memory" },
  { seed: 5039, steps: 150, clients: 9, mode: "memory" },
  // a leave that crashed but was kept, waiting for the only other member, offline (5012)
  { seed: 5012, steps: 150, clients: 9, mode: "memory", args: ["--weight", "crash=20,send=40"] },
  // a message written offline fails after a removal of its sender during the offline span
  // (undone by a re-add the client had not seen): judged from the span's start, excused and
  // counted (found at 7061, which takes other paths since the outbox changed; at 9038 the
  // messages so excused failed "no recipients")
  {
    seed: 9038,
    steps: 300,
    clients: 12,
    mode: "memory",
    atLeast: { "excused.removed-while-offline": 1 },
  },
  // the same online: a message composed before the client received its removal (undone by a
  // re-add before the message) failed "you were removed"; now it goes out after the re-add
  // (9048)
  { seed: 9048, steps: 300, clients: 12, mode: "memory" },
  // a leaver the server had taken off, held in doubt offline: the last member's queued
  // messages, failed for no recipients, looked refused to a member (6199; also 7008)
  { seed: 6199, steps: 150, clients: 9, mode: "memory" },
  // an invitation in doubt, settled "never happened" after the last other member left: the
  // sender's queued messages, failed for no recipients, looked refused to a member (7053)
  {
    seed: 7053,
    steps: 300,
    clients: 12,
    mode: "memory",
    args: ["--weight", "crash=20,send=40"],
  },
];

for (const run of [...SWEEP, ...REGRESSIONS]) simTest(run);
