// The RTMPS listener's certificate and key: with rtmps.port set both must name readable PEM files that make a
// TLS context, checked when the config loads (the process exits before it opens a port) and read again by the
// listener.
import { readFileSync } from "node:fs";
import { createSecureContext, type SecureContext } from "node:tls";
import { ConfigError, errorMessage } from "../core/errors.ts";
import type { Config } from "./defaults.ts";

/** Where a key's value came from (a file, a BATON_* variable, "defaults"), for the error. */
export type OriginOf = (key: string) => string;

/** The RTMPS TLS context, or null when rtmps.port is 0; a ConfigError naming the key when it cannot be made. */
export function rtmpsContext(rtmps: Config["rtmps"], originOf: OriginOf): SecureContext | null {
  if (rtmps.port === 0) return null;
  const read = (key: "cert" | "key", what: string): Buffer => {
    const path = rtmps[key];
    const name = `rtmps.${key}`;
    if (path === "") throw new ConfigError(name, '""', originOf("rtmps.port"), `a ${what} file, since rtmps.port is ${rtmps.port}`);
    try {
      return readFileSync(path);
    } catch (error) {
      throw new ConfigError(name, JSON.stringify(path), originOf(name), `a readable ${what} file (${errorMessage(error)})`);
    }
  };
  const cert = read("cert", "PEM certificate");
  const key = read("key", "PEM private key");
  try {
    return createSecureContext({ cert, key });
  } catch (error) {
    throw new ConfigError("rtmps.cert", JSON.stringify(rtmps.cert), originOf("rtmps.cert"), `a PEM certificate that matches rtmps.key (${errorMessage(error)})`);
  }
}
