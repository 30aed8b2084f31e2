// Whether this node reaches Redis now, by a PING a few times a second. A connection's status says "ready"
// while Redis is frozen (SIGSTOP keeps its sockets open), so the answer is what counts: a node that has had
// none lately lists what owners offer it from memory (cluster/peers.ts) and answers viewers without waiting
// for a read that would only time out.
const EVERY_MS = 250;
/** No PING answered in this long: Redis is away from this node. */
const SILENT_MS = 750;

export class RedisHealth {
  private timer: NodeJS.Timeout | null = null;
  private pinging = false;
  private answeredAt = 0;

  constructor(private readonly ping: () => Promise<unknown>, private readonly now: () => number = Date.now) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.probe(), EVERY_MS);
    void this.probe();
  }

  /** Asks once (one PING in flight at most: a frozen Redis holds it until the command timeout). */
  async probe(): Promise<void> {
    if (this.pinging) return;
    this.pinging = true;
    try {
      await this.ping();
      this.answeredAt = this.now();
    } catch {
      // unanswered: reachable() turns false once SILENT_MS passed since the last answer
    } finally {
      this.pinging = false;
    }
  }

  /** Redis answered this node within the last SILENT_MS. */
  reachable(): boolean {
    return this.now() - this.answeredAt < SILENT_MS;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
