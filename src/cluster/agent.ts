// HAProxy's agent-check: on each connection to agent.port the node answers one line and closes. HAProxy sends
// a line first (`agent-send`): `rtmp` for the publishers' backends, `http` for the viewers'. The answer:
// `up ready NN%` while the node takes work (to the publishers' backends NN is its spare transcode capacity, so
// new publishers go to the least loaded node; to the viewers' always 100%), `drain` while draining (no new
// connections, current ones stay), `maint` once drained.
// A node with no room for another stream answers `drain` to the publishers' backends only: viewers still
// reach it, and HAProxy sends new publishers to nodes with room (or, when none has, to a backup that tells
// the encoder the cluster is full).
import { createServer, type Server, type Socket } from "node:net";
import { listen } from "../core/listen.ts";
import type { NodeState } from "../core/model.ts";

export type AgentBackend = "rtmp" | "http";

export interface AgentLoad {
  publishers: number;
  /** transcode.capacity. */
  capacity: number;
  /** Streams the node may still take now (cluster/capacity.ts). */
  slots: number;
  /** A rolling update sends new publishers to the nodes already updated (cluster/steering.ts). */
  steered?: boolean;
}

export function agentAnswer(state: NodeState, load: AgentLoad, backend: AgentBackend = "http"): string {
  if (state === "draining") return "drain\n";
  if (state === "drained") return "maint\n";
  // viewers are hashed by stream onto the nodes (haproxy.ts): a weight that moved with each publisher would
  // move streams between nodes, each move a cold cache; only the publishers' backend is weighted by load
  if (backend === "http") return "up ready 100%\n";
  if (load.slots <= 0 || load.steered) return "drain\n";
  const spare = Math.round(100 * (1 - load.publishers / load.capacity));
  return `up ready ${Math.max(1, Math.min(100, spare))}%\n`;
}

/** How long the agent waits for HAProxy's line before it answers as for viewers (an agent without agent-send). */
const LINE_WAIT_MS = 200;
/** The longest line HAProxy's agent-send gives here (`rtmp\n`, `http\n`), with room to spare. */
const MAX_LINE = 16;
/** A socket's whole life: HAProxy reads one line and closes within its check timeout. */
const AGENT_SOCKET_MS = 2000;

export class AgentServer {
  private server: Server | null = null;
  /**
   * Answers in a row to the viewers' backend (`http`) that took the node out of its rotation (`drain`,
   * `maint`): HAProxy gives the node weight 0 there, out of the stream hash, on the first.
   */
  httpOutOfRotation = 0;

  constructor(
    private readonly port: number,
    private readonly bind: string,
    private readonly answer: (backend: AgentBackend) => string,
  ) {}

  get boundPort(): number {
    const address = this.server?.address();
    return typeof address === "object" && address ? address.port : this.port;
  }

  private serve(socket: Socket): void {
    socket.on("error", () => undefined);
    // a peer that is not HAProxy (the port is on node.bind) gets one answer, then nothing: it cannot hold the
    // socket, nor grow what is read from it
    socket.setTimeout(AGENT_SOCKET_MS, () => socket.destroy());
    let received = "";
    let answered = false;
    const timer = setTimeout(() => reply(null), LINE_WAIT_MS);
    /** `line`: what HAProxy sent (`rtmp`, `http`), or null when nothing came; answered as for viewers. */
    const reply = (line: string | null): void => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      const backend: AgentBackend = line === "rtmp" ? "rtmp" : "http";
      const answer = this.answer(backend);
      // only HAProxy's own checks of the viewers' backend say the balancer saw the node out of rotation
      if (line === "http") this.httpOutOfRotation = answer.startsWith("up ") ? 0 : this.httpOutOfRotation + 1;
      socket.end(answer);
    };
    socket.on("data", (chunk: Buffer) => {
      if (answered) return;
      // one short line is all HAProxy sends; anything longer is not HAProxy
      received += chunk.toString("latin1");
      if (received.length > MAX_LINE) {
        socket.destroy();
        return;
      }
      if (received.includes("\n")) reply(received.trim());
    });
    socket.on("end", () => reply(received.trim() || null));
    socket.on("close", () => clearTimeout(timer));
  }

  async start(): Promise<void> {
    const server = createServer((socket) => this.serve(socket));
    await listen(server, { port: this.port, bind: this.bind, what: "agent", key: "agent.port / BATON_AGENT_PORT" });
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
