/**
 * qpq entry point: argv -> command table -> run(args) -> exit code. Nothing else.
 * Commands are imported lazily so `qpq --help` starts fast.
 *
 * @module
 */
import { COMMANDS, runMain } from "./src/cli/main.ts";

if (import.meta.main) {
  Deno.exit(await runMain(Deno.args, COMMANDS));
}
