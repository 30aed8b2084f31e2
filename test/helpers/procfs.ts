// What Linux's /proc says of a process.
import { readFileSync } from "node:fs";

/** A process's niceness: field 19 of /proc/{pid}/stat (counted after the command name in parentheses). */
export function niceOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
}
