// Benchmark 4: a publisher that drops and comes back on another node. On the cluster of benchmark 3, the
// stream's publisher is killed (SIGKILL); once /api/streams shows the stream "reconnecting", a new publisher
// is spawned to another node and the time from its spawn to the first new segment (a sequence number beyond
// the last listed before) in that node's playlist is taken. Baseline, same node, same run: a brand-new
// stream's first segment, also from the publisher's spawn. Each run moves the stream to the next node.
import { errorMessage } from "../src/core/errors.ts";
import type { Managed } from "../tools/processes.ts";
import { compared, median, type Figure } from "./report.ts";
import { stop, waitFor } from "./procs.ts";
import { benchRendition, type LiveStream } from "./propagation.ts";
import { publish, streamName, type BenchNode, type Cluster } from "./stack.ts";

const POLL_MS = 20;

/** Spawns a publisher to `node` and resolves with it and the seconds until a sequence above `after` is listed. */
async function firstSegment(node: BenchNode, id: string, rendition: string, after: number): Promise<{ seconds: number; publisher: Managed }> {
  const spawned = Date.now();
  const publisher = publish(node.rtmp(id));
  try {
    const listed = await waitFor(`a segment of ${id} after ${after} on ${node.id}`, async () => {
      if (publisher.child.exitCode !== null) throw new Error("the publisher exited (refused?)");
      return (await node.lastSeq(id, rendition)) > after ? Date.now() : undefined;
    }, 30000, POLL_MS);
    return { seconds: (listed - spawned) / 1000, publisher };
  } catch (error) {
    await stop(publisher, "SIGKILL", 1000);
    throw new Error(`${errorMessage(error)}${node.problems()}`, { cause: error });
  }
}

/** Resolves with the time (ms) at which any node's /api/streams shows the stream in `state`. */
async function stateSeen(c: Cluster, id: string, state: string): Promise<number> {
  return waitFor(`${id} to be ${state}`, async () => {
    const states = await Promise.all(c.nodes.map((n) => n.streamState(id).catch(() => undefined)));
    return states.includes(state) ? Date.now() : undefined;
  }, 30000, 50);
}

/** Kills a publisher and waits until its stream waits for it (the transcoder has flushed and stopped). */
async function dropPublisher(c: Cluster, id: string, publisher: Managed): Promise<number> {
  const killed = Date.now();
  await stop(publisher, "SIGKILL", 1000);
  return ((await stateSeen(c, id, "reconnecting")) - killed) / 1000;
}

export async function reconnect(c: Cluster, live: LiveStream | null, o: { quick: boolean; log: (line: string) => void }): Promise<Figure[]> {
  const reps = o.quick ? 1 : 3;
  const rendition = benchRendition();
  let id = live?.id ?? "";
  let current: Managed | null = live?.publisher ?? null;
  let fresh: Managed | null = null;
  try {
    if (!current) {
      id = streamName("again");
      o.log(`no stream left by the propagation benchmark: publishing ${id} to ${c.nodes[0]!.id}`);
      current = (await firstSegment(c.nodes[0]!, id, rendition, 0)).publisher;
    }
    const returns: number[] = [];
    const firsts: number[] = [];
    const losses: number[] = [];
    for (let rep = 0; rep < reps; rep++) {
      const target = c.nodes[(rep + 1) % c.nodes.length]!;
      if (current) {
        losses.push(await dropPublisher(c, id, current));
        current = null;
      }
      // baseline first, while the dropped stream has no transcoder: the CPU is the same for both
      const freshId = streamName("fresh");
      o.log(`run ${rep + 1}/${reps}: fresh stream ${freshId} on ${target.id}`);
      const f = await firstSegment(target, freshId, rendition, -1);
      fresh = f.publisher;
      firsts.push(f.seconds);
      await dropPublisher(c, freshId, fresh);
      fresh = null;
      const before = await target.lastSeq(id, rendition);
      if (before < 0) throw new Error(`${id} lists no segment on ${target.id} while reconnecting`);
      o.log(`run ${rep + 1}/${reps}: ${id} returns on ${target.id} after segment ${before}`);
      const back = await firstSegment(target, id, rendition, before);
      current = back.publisher;
      returns.push(back.seconds);
    }
    return [
      compared("publisher reconnect to first new segment", "s", median(returns), "fresh stream, first segment", median(firsts), {
        samples: returns, baselineSamples: firsts, note: `SIGKILLed publisher returns on another node; ${reps} run(s), median`,
      }),
      { name: "publisher killed to state 'reconnecting'", unit: "s", value: median(losses), samples: losses, note: "/api/streams polled every 50 ms" },
    ];
  } finally {
    await stop(fresh, "SIGKILL", 1000);
    await stop(current, "SIGKILL", 1000);
  }
}
