// The cluster's feed: what every node hears through Redis pub/sub. A stream id on the timeline channel after
// each change of its timeline or state (so nodes re-read it once), and admin commands for a node or for all
// (relayed by whichever node took the operator's request). The subscription is retried until it connects;
// ioredis resubscribes after reconnects, and each reconnect is announced (changes may have been missed).
import type { Keys } from "./keys.ts";
import { closeRedis, type RedisClient } from "./client.ts";
import type { StreamStore } from "./store.ts";

export interface FeedHandlers {
  /** A stream's timeline or state changed. */
  timeline(streamId: string): void;
  /** An admin command (parsed JSON, unchecked: the receiver validates it). */
  admin(command: unknown): void;
  /** A message on the admin channel that is not JSON. */
  unreadable(message: string): void;
  /** The subscription is (again) up, or went down: while down, changes may be missed. */
  subscribed(up: boolean): void;
}

const RETRY_MS = 1000;

export class Feed {
  private subscriber: RedisClient | null = null;
  private closed = false;

  constructor(private readonly store: Pick<StreamStore, "subscribe" | "redis" | "keys">) {}

  private get keys(): Keys {
    return this.store.keys;
  }

  /** Subscribes (in the background, retried until it connects). */
  start(handlers: FeedHandlers): void {
    void this.connect(handlers);
  }

  private async connect(handlers: FeedHandlers): Promise<void> {
    while (!this.closed && !this.subscriber) {
      try {
        const subscriber = await this.store.subscribe(
          {
            [this.keys.timelineChannel()]: (id) => handlers.timeline(id),
            [this.keys.adminChannel()]: (message) => {
              let command: unknown;
              try {
                command = JSON.parse(message);
              } catch {
                handlers.unreadable(message.slice(0, 200));
                return;
              }
              handlers.admin(command);
            },
          },
          () => handlers.subscribed(true),
        );
        if (this.closed) {
          closeRedis(subscriber);
          return;
        }
        this.subscriber = subscriber;
        handlers.subscribed(true);
        subscriber.on("close", () => handlers.subscribed(false));
      } catch {
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
  }

  /** Sends an admin command to the node it names (or every node, "*"), through Redis. */
  async publishAdmin(command: object): Promise<void> {
    await this.store.redis.publish(this.keys.adminChannel(), JSON.stringify(command));
  }

  close(): void {
    this.closed = true;
    if (this.subscriber) closeRedis(this.subscriber);
    this.subscriber = null;
  }
}
