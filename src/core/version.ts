import { readFileSync } from "node:fs";

/** baton's version, from package.json: registered by each node and carried in script names. */
export const VERSION: string = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
