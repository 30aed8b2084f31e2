// A client as limits count it: an IPv4 address, or an IPv6 client's /64 (one subscriber's network), so walking
// through its own addresses buys it nothing. Used by every per-address limit (HTTP sockets, session starts,
// RTMP connections).
import { isIP } from "node:net";

/** The first four groups of an IPv6 address, `::` expanded: its /64. */
function prefix64(address: string): string {
  const [head = "", tail] = address.split("%")[0]!.split("::") as [string?, string?];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  // an embedded IPv4 tail (64:ff9b::1.2.3.4) stands for two groups
  const width = (groups: string[]): number => groups.length + (groups.at(-1)?.includes(".") ? 1 : 0);
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - width(left) - width(right))).fill("0"), ...right];
  return `${groups.slice(0, 4).map((g) => Number.parseInt(g, 16).toString(16)).join(":")}::/64`;
}

/** The key a per-address limit counts an address under. */
export function clientKey(address: string): string {
  return isIP(address.split("%")[0]!) === 6 ? prefix64(address) : address;
}

