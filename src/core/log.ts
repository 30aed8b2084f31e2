// One logger for the process: `time LEVEL [node] scope: message key=value ...` lines on stderr.
export type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export type Fields = Record<string, string | number | boolean | undefined>;

export interface Logger {
  debug(message: string, fields?: Fields): void;
  info(message: string, fields?: Fields): void;
  warn(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
  child(scope: string): Logger;
  enabled(level: Level): boolean;
}

function format(fields: Fields | undefined): string {
  if (!fields) return "";
  let out = "";
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const text = String(value);
    out += ` ${key}=${/[\s"=]/.test(text) || text === "" ? JSON.stringify(text) : text}`;
  }
  return out;
}

export function createLogger(options: { level: Level; node?: string; scope?: string; write?: (line: string) => void }): Logger {
  const write = options.write ?? ((line: string) => process.stderr.write(line + "\n"));
  const prefix = `${options.node ? `[${options.node}] ` : ""}${options.scope ? `${options.scope}: ` : ""}`;
  const emit = (level: Level, message: string, fields?: Fields): void => {
    if (ORDER[level] < ORDER[options.level]) return;
    write(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${prefix}${message}${format(fields)}`);
  };
  return {
    debug: (message, fields) => emit("debug", message, fields),
    info: (message, fields) => emit("info", message, fields),
    warn: (message, fields) => emit("warn", message, fields),
    error: (message, fields) => emit("error", message, fields),
    child: (scope) => createLogger({ ...options, scope }),
    enabled: (level) => ORDER[level] >= ORDER[options.level],
  };
}
