// HAProxy's agent-check: on each connection to agent.port the node answers one line and closes.
// `up ready NN%` while it takes work (NN: its spare transcode capacity, so new publishers go to the least
// loaded node), `drain` while draining (no new connections, current ones stay), `maint` once drained.
import { createServer, type Server } from "node:net";
import { listen } from "../core/listen.ts";
import type { NodeState } from "../core/model.ts";

export function agentAnswer(state: NodeState, publishers: number, capacity: number): string {
  if (state === "draining") return "drain\n";
  if (state === "drained") return "maint\n";
  const spare = Math.round(100 * (1 - publishers / capacity));
  return `up ready ${Math.max(1, Math.min(100, spare))}%\n`;
}

export class AgentServer {
  private server: Server | null = null;
  /** Answers in a row that took the node out of rotation (`drain`, `maint`): how often the balancer saw it. */
  outOfRotation = 0;

  constructor(
    private readonly port: number,
    private readonly bind: string,
    private readonly answer: () => string,
  ) {}

  get boundPort(): number {
    const address = this.server?.address();
    return typeof address === "object" && address ? address.port : this.port;
  }

  async start(): Promise<void> {
    const server = createServer((socket) => {
      socket.on("error", () => undefined);
      const answer = this.answer();
      this.outOfRotation = answer.startsWith("up ") ? 0 : this.outOfRotation + 1;
      socket.end(answer);
    });
    await listen(server, { port: this.port, bind: this.bind, what: "agent", key: "agent.port / BATON_AGENT_PORT" });
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
