// HAProxy's agent-check: on each connection to agent.port the node answers one line and closes. HAProxy sends
// a line first (`agent-send`): `rtmp` for the publishers' backends, `http` for the viewers'. The answer:
// `up ready NN%` while the node takes work (NN: its spare transcode capacity, so new publishers go to the
// least loaded node), `drain` while draining (no new connections, current ones stay), `maint` once drained.
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
}

export function agentAnswer(state: NodeState, load: AgentLoad, backend: AgentBackend = "http"): string {
  if (state === "draining") return "drain\n";
  if (state === "drained") return "maint\n";
  if (backend === "rtmp" && load.slots <= 0) return "drain\n";
  const spare = Math.round(100 * (1 - load.publishers / load.capacity));
  return `up ready ${Math.max(1, Math.min(100, spare))}%\n`;
}

/** How long the agent waits for HAProxy's line before it answers as for viewers (an agent without agent-send). */
const LINE_WAIT_MS = 200;

export class AgentServer {
  private server: Server | null = null;

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
    let received = "";
    let answered = false;
    const timer = setTimeout(() => reply("http"), LINE_WAIT_MS);
    const reply = (backend: AgentBackend): void => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      socket.end(this.answer(backend));
    };
    socket.on("data", (chunk: Buffer) => {
      // one short line is all HAProxy sends; anything longer is not HAProxy
      received += chunk.toString("latin1");
      if (received.includes("\n") || received.length > 16) reply(received.trim() === "rtmp" ? "rtmp" : "http");
    });
    socket.on("end", () => reply(received.trim() === "rtmp" ? "rtmp" : "http"));
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
