/**
 * `slowClients` in a process of its own, so that a latency probe in the
 * parent measures the forwarder and not the event loop driving thousands of
 * slow clients. Arguments: a JSON SlowClientsOptions with `bytes` as an
 * array of numbers; prints the SlowClientsResult as JSON on stdout.
 */
import { slowClients, type SlowClientsOptions } from "./abuse.ts";

const given = JSON.parse(process.argv[2] ?? "{}") as Omit<SlowClientsOptions, "bytes"> & { bytes: number[] };
const result = await slowClients({ ...given, bytes: new Uint8Array(given.bytes) });
await new Promise<void>((done) => process.stdout.write(JSON.stringify(result), () => done()));
// The give-up timer still holds the event loop when every client closed early.
process.exit(0);
