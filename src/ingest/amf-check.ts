// A bounded walk over AMF0 before node-media-server decodes it. Its decoder loops once per element a strict
// array declares and copies a Buffer view per value, so a command declaring four billion elements kept the
// event loop busy for seconds. This walk reads without allocating, refuses a count or length larger than the
// bytes that follow, limits nesting and the number of values, and accepts only the types encoders send, so
// what reaches the decoder is small work by construction.

/** Values in one message: a connect or onMetaData has a few dozen. */
export const MAX_AMF_VALUES = 512;
/** Nesting of objects and arrays. */
export const MAX_AMF_DEPTH = 8;
/**
 * Property names, in bytes. node-media-server ends an object when the high byte of a name's length is 0x09
 * (a name of 2304 bytes or more), so longer names would be read differently by it than here.
 */
const MAX_NAME = 255;

class AmfProblem extends Error {}

class Walk {
  values = 0;
  constructor(private readonly data: Buffer) {}

  private need(offset: number, count: number, what: string): void {
    if (offset + count > this.data.length) throw new AmfProblem(`${what} at byte ${offset} needs ${count} bytes, ${this.data.length - offset} left`);
  }

  private u16(offset: number): number {
    this.need(offset, 2, "a length");
    return this.data.readUInt16BE(offset);
  }

  private u32(offset: number): number {
    this.need(offset, 4, "a count");
    return this.data.readUInt32BE(offset);
  }

  /** The object body (name, value)* then an empty name and 0x09; returns the offset after it. */
  private properties(offset: number, depth: number): number {
    for (;;) {
      const length = this.u16(offset);
      if (length > MAX_NAME) throw new AmfProblem(`a property name of ${length} bytes at byte ${offset}`);
      this.need(offset + 2, length + 1, "a property");
      offset += 2 + length;
      if (length === 0) {
        if (this.data[offset] !== 0x09) throw new AmfProblem(`an empty property name without an object end at byte ${offset}`);
        return offset + 1;
      }
      offset = this.value(offset, depth);
    }
  }

  /** One value starting at `offset`; returns the offset after it. */
  value(offset: number, depth: number): number {
    if (++this.values > MAX_AMF_VALUES) throw new AmfProblem(`more than ${MAX_AMF_VALUES} values`);
    if (depth > MAX_AMF_DEPTH) throw new AmfProblem(`nested deeper than ${MAX_AMF_DEPTH}`);
    this.need(offset, 1, "a type marker");
    const marker = this.data[offset]!;
    const at = offset + 1;
    switch (marker) {
      case 0x00: // number
        this.need(at, 8, "a number");
        return at + 8;
      case 0x01: // boolean
        this.need(at, 1, "a boolean");
        return at + 1;
      case 0x02: {
        // string
        const length = this.u16(at);
        this.need(at + 2, length, "a string");
        return at + 2 + length;
      }
      case 0x03: // object
        return this.properties(at, depth + 1);
      case 0x05: // null
      case 0x06: // undefined
        return at;
      case 0x08: // ECMA array: the count is a hint nobody loops on; the body is an object's
        this.need(at, 4, "an array count");
        return this.properties(at + 4, depth + 1);
      case 0x0a: {
        // strict array: every element takes at least one byte, so a count beyond the bytes left is a lie
        const count = this.u32(at);
        const left = this.data.length - (at + 4);
        if (count > left) throw new AmfProblem(`a strict array declaring ${count} elements in ${left} bytes`);
        let next = at + 4;
        for (let i = 0; i < count; i++) next = this.value(next, depth + 1);
        return next;
      }
      case 0x0b: // date: milliseconds and a time zone
        this.need(at, 10, "a date");
        return at + 10;
      case 0x0c: {
        // long string
        const length = this.u32(at);
        this.need(at + 4, length, "a long string");
        return at + 4 + length;
      }
      default:
        // references, XML, typed objects, AMF3: no encoder sends them in a publish's commands or metadata
        throw new AmfProblem(`unsupported AMF0 type 0x${marker.toString(16).padStart(2, "0")} at byte ${offset}`);
    }
  }
}

/** Null when `data` is a sequence of AMF0 values within the limits above; otherwise what is wrong with it. */
export function checkAmf0(data: Buffer): string | null {
  const walk = new Walk(data);
  try {
    let offset = 0;
    while (offset < data.length) offset = walk.value(offset, 0);
    return null;
  } catch (error) {
    if (error instanceof AmfProblem) return error.message;
    throw error;
  }
}
