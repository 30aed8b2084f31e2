// The PROXY protocol header a balancer puts before a relayed TCP connection's bytes (HAProxy's `send-proxy-v2`),
// naming the client it accepted the connection from. Version 2 is binary, version 1 one line of text; both are
// read (haproxy.org/download/2.9/doc/proxy-protocol.txt). The receiver must not guess whether a header is
// there: on a listener that expects one, bytes that start otherwise are refused.
import { isIP } from "node:net";

export type ProxyHeader =
  | { state: "incomplete" }
  | { state: "invalid"; missing: boolean; message: string }
  /** `source` is null for a connection the proxy made itself (LOCAL, UNKNOWN): its real peer is the client. */
  | { state: "done"; length: number; source: { address: string; port: number } | null };

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from("PROXY ", "latin1");
/** "PROXY UNKNOWN" with two IPv6 addresses and two ports, CRLF included: the longest v1 line. */
const V1_MAX = 107;
/**
 * Address block plus TLVs of a v2 header. HAProxy sends 12 (IPv4) or 36 (IPv6) bytes plus the TLVs it is asked
 * for (a unique id is up to 128 bytes, SSL details a few hundred); anything near 64 KiB is no balancer's.
 */
const V2_MAX_BODY = 2048;

/** The longest header this reads: a listener buffers no more than this before it knows. */
export const PROXY_HEADER_MAX = 16 + V2_MAX_BODY;

const invalid = (message: string): ProxyHeader => ({ state: "invalid", missing: false, message });

/** True while `data` is still a prefix of `prefix` (or starts with all of it). */
function startsLike(data: Buffer, prefix: Buffer): boolean {
  const n = Math.min(data.length, prefix.length);
  return data.subarray(0, n).equals(prefix.subarray(0, n));
}

/** Reads a header at the start of `data` (the connection's first bytes so far). */
export function parseProxyHeader(data: Buffer): ProxyHeader {
  if (data.length === 0) return { state: "incomplete" };
  if (startsLike(data, V2_SIGNATURE)) return data.length < 16 ? { state: "incomplete" } : parseV2(data);
  if (startsLike(data, V1_PREFIX)) return parseV1(data);
  return { state: "invalid", missing: true, message: `no PROXY protocol header (first byte 0x${data[0]!.toString(16).padStart(2, "0")})` };
}

function parseV2(data: Buffer): ProxyHeader {
  const version = data[12]! >> 4;
  const command = data[12]! & 0x0f;
  const family = data[13]! >> 4;
  const transport = data[13]! & 0x0f;
  const length = data.readUInt16BE(14);
  if (version !== 2) return invalid(`PROXY v2 header with version ${version}`);
  if (command > 1) return invalid(`PROXY v2 header with command ${command}`);
  if (family > 3 || transport > 2) return invalid(`PROXY v2 header with family/transport 0x${data[13]!.toString(16)}`);
  if (length > V2_MAX_BODY) return invalid(`PROXY v2 header of ${length} bytes (at most ${V2_MAX_BODY})`);
  if (data.length < 16 + length) return { state: "incomplete" };
  const done = (source: { address: string; port: number } | null): ProxyHeader => ({ state: "done", length: 16 + length, source });
  // LOCAL (the proxy's own connection), UNSPEC and UNIX sockets: the peer is the client
  if (command === 0 || transport === 0 || family === 0 || family === 3) return done(null);
  const body = data.subarray(16, 16 + length);
  if (family === 1) {
    if (length < 12) return invalid(`PROXY v2 IPv4 address block of ${length} bytes`);
    return done({ address: [...body.subarray(0, 4)].join("."), port: body.readUInt16BE(8) });
  }
  if (length < 36) return invalid(`PROXY v2 IPv6 address block of ${length} bytes`);
  const groups = Array.from({ length: 8 }, (_, i) => body.readUInt16BE(i * 2).toString(16));
  return done({ address: canonicalIpv6(groups.join(":")), port: body.readUInt16BE(32) });
}

const PORT = /^(0|[1-9][0-9]{0,4})$/;

function parseV1(data: Buffer): ProxyHeader {
  const end = data.subarray(0, V1_MAX).indexOf("\r\n", 0, "latin1");
  if (end === -1) return data.length >= V1_MAX ? invalid(`PROXY v1 line without CRLF in ${V1_MAX} bytes`) : { state: "incomplete" };
  const line = data.toString("latin1", 0, end);
  const [, protocol, source, destination, sourcePort, destinationPort, ...rest] = line.split(" ");
  if (protocol === "UNKNOWN") return { state: "done", length: end + 2, source: null };
  const family = protocol === "TCP4" ? 4 : protocol === "TCP6" ? 6 : 0;
  if (family === 0) return invalid(`PROXY v1 protocol ${JSON.stringify(protocol ?? "")}`);
  if (rest.length > 0 || !source || !destination || !sourcePort || !destinationPort) return invalid(`PROXY v1 line ${JSON.stringify(line)}`);
  if (isIP(source) !== family || isIP(destination) !== family) return invalid(`PROXY v1 addresses ${source} ${destination} are not ${protocol}`);
  for (const port of [sourcePort, destinationPort]) {
    if (!PORT.test(port) || Number(port) > 65535) return invalid(`PROXY v1 port ${JSON.stringify(port)}`);
  }
  const address = family === 6 ? canonicalIpv6(source) : source;
  return { state: "done", length: end + 2, source: { address, port: Number(sourcePort) } };
}

/**
 * An IPv6 address in one spelling, so two spellings of one client count as one; an IPv4-mapped address as the
 * IPv4 address (what a dual-stack socket reports for that client as well).
 */
function canonicalIpv6(text: string): string {
  // the URL serializer writes the RFC 5952 form: lower case, no leading zeros, the longest zero run as "::"
  const canonical = new URL(`http://[${text}]`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (!mapped) return canonical;
  const [high, low] = [parseInt(mapped[1]!, 16), parseInt(mapped[2]!, 16)];
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join(".");
}
