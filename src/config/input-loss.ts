// hls.inputLoss's keys that depend on others or on a file, checked when the config loads: the window that
// replaces hls.reconnectWindow (and defaults to it), and the slate image, which must be a PNG or JPEG file
// that can be read now, so a node never finds out at its first input loss that it has no slate.
import { closeSync, openSync, readSync } from "node:fs";
import { ConfigError, errorMessage } from "../core/errors.ts";
import type { Config } from "./defaults.ts";
import type { OriginOf } from "./tls.ts";

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const JPEG = Buffer.from([0xff, 0xd8, 0xff]);

/** The first bytes of a file (at most `length`). */
function head(path: string, length: number): Buffer {
  const fd = openSync(path, "r");
  try {
    const bytes = Buffer.alloc(length);
    return bytes.subarray(0, readSync(fd, bytes, 0, length, 0));
  } finally {
    closeSync(fd);
  }
}

export function inputLossDefaults(hls: Config["hls"], originOf: OriginOf): void {
  // set on its own, hls.reconnectWindow keeps working: it is the window while hls.inputLossWindow is unset
  if (originOf("hls.inputLossWindow") === "defaults") hls.inputLossWindow = hls.reconnectWindow;
  if (hls.slateImage === "") return;
  let bytes: Buffer;
  try {
    bytes = head(hls.slateImage, PNG.length);
  } catch (error) {
    throw new ConfigError("hls.slateImage", JSON.stringify(hls.slateImage), originOf("hls.slateImage"), `a readable PNG or JPEG file (${errorMessage(error)})`);
  }
  if (!bytes.subarray(0, PNG.length).equals(PNG) && !bytes.subarray(0, JPEG.length).equals(JPEG)) {
    throw new ConfigError("hls.slateImage", JSON.stringify(hls.slateImage), originOf("hls.slateImage"), "a PNG or JPEG file (its first bytes are neither)");
  }
}
