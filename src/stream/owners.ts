// The streams this node owns, one StreamOwner per publisher it admitted: created when a publish is admitted,
// forgotten when it closes, handed over (or aborted) by a drain, ended by a revocation or a shutdown. One
// stream's failure ends that stream, never the node.
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Config } from "../config/defaults.ts";
import type { PublisherConnection } from "../ingest/rtmp-server.ts";
import type { TranscoderSample } from "../cluster/capacity.ts";
import type { InputRole } from "../core/model.ts";
import { StreamOwner, type OwnerOptions, type PublishGrants, type TimelineWriter } from "./owner.ts";
import type { SlateKeepers } from "./slate-keepers.ts";

export interface OwnersOptions {
  store: TimelineWriter & PublishGrants;
  nodeId: string;
  config: Config;
  log: Logger;
  metrics: Metrics;
  /** Whether a node is alive (its heartbeat is fresh): a dead holder's lease is waited out, not refused. */
  nodeAlive(nodeId: string): Promise<boolean>;
  /** Whether the process of a node that made a claim at `claimedAt` is gone (cluster/liveness.ts). */
  ownerGone(nodeId: string, claimedAt: number): Promise<boolean>;
  /** The slates this node keeps (hls.inputLoss "slate"); absent: "off", a publisher's leaving releases the stream. */
  slates?: SlateKeepers;
  /** Where owners offer entries whose append does not land (cluster/peers.ts). */
  peers?: OwnerOptions["peers"];
  /** Whether another node runs a hot standby of the stream. */
  standbyElsewhere?: OwnerOptions["standbyElsewhere"];
  /** The active input's date-time offset, as its node reported it. */
  activeOffset?: OwnerOptions["activeOffset"];
}

export class StreamOwners {
  private readonly owners = new Map<string, StreamOwner>();

  constructor(private readonly o: OwnersOptions) {}

  get size(): number {
    return this.owners.size;
  }

  /** Whether this node has a publisher of the stream still connected (an owner whose publisher left is finishing). */
  isLive(streamId: string): boolean {
    return this.owners.get(streamId)?.publisherConnected === true;
  }

  /** An admitted publisher: its owner claims the stream and runs its pipeline until it closes. */
  publisher(connection: PublisherConnection): void {
    const { log, metrics } = this.o;
    const owner = new StreamOwner({ ...this.o, connection, grants: this.o.store, log: log.child("stream"), ...(this.o.slates ? { slate: this.o.slates } : {}) });
    owner.reportListenerErrors((event, error) => log.error("owner listener failed", { event, error: errorMessage(error) }));
    this.owners.set(connection.streamId, owner);
    metrics.publishers.set(this.owners.size);
    const forget = (): void => {
      if (this.owners.get(connection.streamId) === owner) this.owners.delete(connection.streamId);
      metrics.publishers.set(this.owners.size);
    };
    owner.on("closed", forget);
    owner
      .start()
      .then((accepted) => {
        if (!accepted) forget();
      })
      .catch((error: unknown) => {
        log.error("stream failed to start", { stream: connection.streamId, error: errorMessage(error) });
        metrics.streamFailures.inc({ reason: "start_failed" });
        connection.close("stream failed to start");
        void owner.close("stream failed to start").finally(forget);
      });
  }

  /** Ends the stream's publish here, if this node has it. */
  end(streamId: string, reason: string): void {
    void this.owners.get(streamId)?.close(reason);
    void this.o.slates?.end(streamId, reason);
  }

  /** A drain: every owner hands its stream over (its encoder reconnects elsewhere), every slate goes to another node. */
  async handoffAll(): Promise<void> {
    await Promise.all([...this.owners.values()].map((owner) => owner.handoff()));
    await this.o.slates?.closeAll("node draining");
  }

  /** Past a drain's deadline: every owner stops at once. */
  async abortAll(): Promise<void> {
    await Promise.all([...this.owners.values()].map((owner) => owner.abort()));
    await this.o.slates?.closeAll("node stopping");
  }

  async closeAll(reason: string): Promise<void> {
    await this.o.slates?.closeAll(reason, true);
    await Promise.all([...this.owners.values()].map((owner) => owner.close(reason)));
  }

  /** Whether this node runs a hot standby of the stream that could take over now (its media fresh). */
  standbyHere(streamId: string): boolean {
    const input = this.owners.get(streamId)?.input;
    return input?.state === "standby" && input.ready === true;
  }

  /** The stream's active input's node died (holding `holder`): this node's standby of it takes over now. */
  activeDied(streamId: string, holder: string): void {
    const owner = this.owners.get(streamId);
    if (owner?.input.state === "standby") owner.activeDied(holder);
  }

  /** The role of this node's live publisher of the stream, if it has one (a backup goes to another node). */
  liveRole(streamId: string): InputRole | null {
    const owner = this.owners.get(streamId);
    return owner?.publisherConnected ? owner.input.role : null;
  }

  /**
   * What /admin/status lists: each stream, its epoch once claimed, and its input (role, active or standby, and
   * for a standby whether it could take over now).
   */
  list(): { stream: string; epoch: number | null; role: InputRole; input: "active" | "standby"; ready?: boolean }[] {
    return [...this.owners.values()].map((o) => {
      const { role, state, ready } = o.input;
      return { stream: o.streamId, epoch: o.claim?.epoch ?? null, role, input: state, ...(ready === undefined ? {} : { ready }) };
    });
  }

  /** Each stream's input here, as the registry record carries it (`baton status` shows who is active). */
  inputs(): Record<string, StreamOwner["input"]> {
    return Object.fromEntries([...this.owners].map(([id, o]) => [id, o.input]));
  }

  /** What capacity measures of each stream this node holds (one per owner, measured or not yet). */
  transcoders(): TranscoderSample[] {
    return [...this.owners.values()].map((o) => ({ pid: o.transcoderPid, speed: o.speed }));
  }

  /** Each owned stream's transcoder speed, once measured (the registry record shows it). */
  speeds(): Record<string, number> {
    return Object.fromEntries([...this.owners].flatMap(([id, o]) => (o.speed === null ? [] : [[id, Math.round(o.speed * 100) / 100]])));
  }
}
