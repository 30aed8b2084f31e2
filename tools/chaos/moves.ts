// How often each stream's live input moved between nodes during a chaos run (issue 12's "moves per stream":
// a rolling update without a backup encoder should move a stream once). The cluster API is read twice a second;
// a node keeping the stream on the slate is no move (nor is its end): a move is a live owner other than the
// last live owner seen.
import { streamsOf, type AdminClient } from "../admin-cli.ts";

export class MoveCounter {
  private readonly owners = new Map<string, string>();
  readonly moves = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private reading = false;

  constructor(private readonly admin: AdminClient, streams: string[], private readonly everyMs = 500) {
    for (const id of streams) this.moves.set(id, 0);
  }

  start(): void {
    this.timer ??= setInterval(() => void this.look(), this.everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async look(): Promise<void> {
    if (this.reading) return;
    this.reading = true;
    try {
      // Redis away: the API cannot list streams; the next look sees where they are
      for (const s of await streamsOf({ ...this.admin, say: () => undefined }).catch(() => [])) {
        if (!this.moves.has(s.id) || s.slate || s.state !== "live") continue;
        const last = this.owners.get(s.id);
        if (last !== undefined && last !== s.owner) this.moves.set(s.id, this.moves.get(s.id)! + 1);
        this.owners.set(s.id, s.owner);
      }
    } finally {
      this.reading = false;
    }
  }
}
