// The chaos harness's consistency checker against a fake node on loopback: a segment some node listed during
// the run that the final playlists no longer list counts as lost; one that merely left the window does not.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ConsistencyChecker } from "../../tools/chaos/consistency.ts";

function playlist(first: number, last: number): string {
  const lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", `#EXT-X-MEDIA-SEQUENCE:${first}`];
  for (let seq = first; seq <= last; seq++) lines.push("#EXTINF:1.000,", `${seq}.abc.ts`);
  return `${lines.join("\n")}\n`;
}

describe("chaos: segments lost", () => {
  let server: Server;
  let text = "";
  let url = "";
  before(async () => {
    server = createServer((_req, res) => res.end(text));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const checker = (): ConsistencyChecker => new ConsistencyChecker(async () => [{ id: "n1", httpUrl: url }], [{ id: "s", rendition: "240p" }]);

  it("counts a segment listed during the run and missing from the final playlist", async () => {
    const c = checker();
    text = playlist(0, 4);
    await c.poll();
    text = playlist(0, 3);
    const lost = await c.lost();
    assert.equal(lost.count, 1);
    assert.match(lost.examples[0]!, /s seq 4: listed during the run, not at its end/);
  });

  it("counts nothing when the window only moved on", async () => {
    const c = checker();
    text = playlist(0, 4);
    await c.poll();
    text = playlist(3, 8);
    assert.deepEqual(await c.lost(), { count: 0, examples: [] });
  });
});
