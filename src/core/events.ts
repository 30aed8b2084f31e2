// Typed events (like mediasoup's EnhancedEventEmitter): each class declares its events as a type map, and
// emit() catches a listener's throw so one bad listener cannot break the emitter.
import { EventEmitter } from "node:events";

type Events = Record<string, unknown[]>;

export class TypedEmitter<E extends Events> {
  private readonly emitter = new EventEmitter();
  private onListenerError: (event: string, error: unknown) => void = () => undefined;

  constructor() {
    this.emitter.setMaxListeners(100);
  }

  /** Where a listener's throw is reported (a log line); it never reaches the emitter's caller. */
  reportListenerErrors(report: (event: string, error: unknown) => void): void {
    this.onListenerError = report;
  }

  on<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    this.emitter.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  once<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    this.emitter.once(event, listener as (...args: unknown[]) => void);
    return this;
  }

  off<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    this.emitter.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  removeAllListeners(): void {
    this.emitter.removeAllListeners();
  }

  protected emit<K extends keyof E & string>(event: K, ...args: E[K]): void {
    for (const listener of this.emitter.listeners(event)) {
      try {
        (listener as (...a: E[K]) => void)(...args);
      } catch (error) {
        this.onListenerError(event, error);
      }
    }
  }
}
