/**
 * The byte-level half of the failover rewrite: a Velero backup tarball (`<name>.tar.gz`, written by
 * Go's archive/tar in pkg/backup: one regular-file entry per item, USTAR headers, names over 100
 * bytes split into USTAR's prefix field) read as a list of entries and edited in place. Only the
 * entries we replace change, and in them only the data, the size field and the checksum; every
 * other byte of the archive (other entries, their order, headers, padding, trailer) is kept.
 *
 * Reads what real tar writers produce: POSIX USTAR (with prefix), PAX extended headers (`x`, `g`;
 * `path` and `size` records), GNU long names (`L`, `K`) and GNU base-256 sizes.
 *
 * Two forms of the same edit: over a whole archive in memory (`listTarEntries`, `replaceTarData`:
 * `dr velero rewrite`), and as a stream (`TarRewriteStream`: publishing, for tarballs of any
 * size), which reads the same entries the same way and writes the same bytes. No fs.
 */
import { Transform, type TransformCallback } from "node:stream";
import { DrError } from "./errors.js";

/** The tar stream is not one we can read (truncated, bad checksum, unsupported layout). */
export class TarFormatError extends DrError {}

const BLOCK = 512;

export interface TarEntry {
  /** Full path: PAX `path`, else GNU long name, else USTAR prefix + "/" + name. */
  name: string;
  /** Typeflag: "0" regular file, "5" directory, ... ("\0" is read as "0"). */
  type: string;
  /** Offset of this entry's own header (after any PAX / GNU long-name headers). */
  headerOffset: number;
  dataOffset: number;
  size: number;
  /** Offset just past this entry's data and padding: where the next entry starts. */
  end: number;
  /** The entry's size came from a PAX record (not editable in place). */
  paxSize: boolean;
}

const ascii = (b: Buffer, start: number, length: number) => {
  const field = b.subarray(start, start + length);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? field.length : nul).toString("utf8");
};

function numeric(b: Buffer, start: number, length: number, what: string): number {
  const field = b.subarray(start, start + length);
  const first = field[0] ?? 0;
  if (first & 0x80) {
    // GNU base-256: big-endian two's complement with the top bit of the first byte as a marker.
    if (first & 0x40) throw new TarFormatError(`${what} is negative`);
    let n = first & 0x7f;
    for (const byte of field.subarray(1)) n = n * 256 + byte;
    if (!Number.isSafeInteger(n)) throw new TarFormatError(`${what} is too large`);
    return n;
  }
  const text = field
    .toString("latin1")
    .replace(/[\0 ]+$/, "")
    .replace(/^ +/, "");
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`${what} is not an octal number: "${text}"`);
  return Number.parseInt(text, 8);
}

/** Sum of the header's bytes with the checksum field read as eight spaces (POSIX). */
function checksum(header: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
  return sum;
}

/**
 * One entry header's checksum-verified size and type (a NUL type byte is "0", a regular file), as
 * both readers (the in-memory one and the stream) take them; `where` names it in errors.
 */
function readHeader(header: Buffer, offset: number): { where: string; size: number; type: string } {
  const where = `entry header at byte ${offset}`;
  const stored = numeric(header, 148, 8, `${where}: checksum`);
  if (stored !== checksum(header)) throw new TarFormatError(`${where}: bad checksum`);
  const size = numeric(header, 124, 12, `${where}: size`);
  const typeByte = header[156] ?? 0;
  return { where, size, type: typeByte === 0 ? "0" : String.fromCharCode(typeByte) };
}

function isZeroBlock(b: Buffer, offset: number): boolean {
  for (let i = offset; i < offset + BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

/** PAX records: "<len> <key>=<value>\n", len counting the whole record. */
function paxRecords(data: Buffer, where: string): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) break;
    const space = data.indexOf(0x20, at);
    const len = space === -1 ? Number.NaN : Number(data.subarray(at, space).toString("latin1"));
    if (!Number.isInteger(len) || len <= 0 || at + len > data.length) {
      throw new TarFormatError(`${where}: malformed PAX record at byte ${at}`);
    }
    const record = data.subarray(space + 1, at + len - 1).toString("utf8");
    const eq = record.indexOf("=");
    if (eq <= 0) throw new TarFormatError(`${where}: malformed PAX record at byte ${at}`);
    out.set(record.slice(0, eq), record.slice(eq + 1));
    at += len;
  }
  return out;
}

/** Lists the entries of an uncompressed tar stream, in order. Meta entries (PAX, GNU L/K) are folded in. */
export function listTarEntries(tar: Buffer): TarEntry[] {
  const entries: TarEntry[] = [];
  const global = new Map<string, string>();
  let local = new Map<string, string>();
  let longName: string | undefined;
  let offset = 0;
  while (true) {
    if (offset + BLOCK > tar.length) {
      throw new TarFormatError(`truncated at byte ${offset}: no end-of-archive marker`);
    }
    if (isZeroBlock(tar, offset)) {
      if (local.size > 0 || longName !== undefined) {
        throw new TarFormatError(`archive ends after an extended header at byte ${offset}`);
      }
      return entries;
    }
    const header = tar.subarray(offset, offset + BLOCK);
    const { where, size, type } = readHeader(header, offset);
    const dataOffset = offset + BLOCK;
    const end = dataOffset + Math.ceil(size / BLOCK) * BLOCK;
    if (end > tar.length) throw new TarFormatError(`${where}: data runs past the end of the archive`);
    const data = tar.subarray(dataOffset, dataOffset + size);
    switch (type) {
      case "x":
        local = paxRecords(data, where);
        break;
      case "g":
        for (const [k, v] of paxRecords(data, where)) global.set(k, v);
        break;
      case "L":
        longName = ascii(data, 0, data.length);
        break;
      case "K":
        break; // GNU long link name: not needed to find or edit entries.
      default: {
        const magic = header.subarray(257, 263).toString("latin1");
        const prefix = magic === "ustar\0" ? ascii(header, 345, 155) : "";
        const ustarName = ascii(header, 0, 100);
        const name =
          local.get("path") ??
          longName ??
          global.get("path") ??
          (prefix ? `${prefix}/${ustarName}` : ustarName);
        const paxSize = local.get("size") ?? global.get("size");
        const realSize = paxSize === undefined ? size : Number(paxSize);
        if (!Number.isSafeInteger(realSize) || realSize < 0) {
          throw new TarFormatError(`${where}: bad PAX size "${paxSize}"`);
        }
        const realEnd = dataOffset + Math.ceil(realSize / BLOCK) * BLOCK;
        if (realEnd > tar.length) throw new TarFormatError(`${where}: data runs past the end of the archive`);
        entries.push({
          name,
          type,
          headerOffset: offset,
          dataOffset,
          size: realSize,
          end: realEnd,
          paxSize: paxSize !== undefined,
        });
        local = new Map();
        longName = undefined;
        offset = realEnd;
        continue;
      }
    }
    offset = end;
  }
}

/** The data of one entry. */
export function tarEntryData(tar: Buffer, entry: TarEntry): Buffer {
  return tar.subarray(entry.dataOffset, entry.dataOffset + entry.size);
}

/** Octal with leading zeros and a NUL, filling the field exactly (what Go, GNU tar and Python write). */
function writeOctal(header: Buffer, start: number, length: number, value: number): void {
  const digits = value.toString(8).padStart(length - 1, "0");
  if (digits.length > length - 1) throw new TarFormatError(`${value} does not fit a ${length}-byte field`);
  header.write(`${digits}\0`, start, length, "latin1");
}

/**
 * A copy of the archive with the data of some entries replaced (keyed by headerOffset). A replaced
 * entry keeps its header except the size and the checksum; everything between and after the
 * replaced entries is copied byte for byte.
 */
export function replaceTarData(tar: Buffer, replacements: ReadonlyMap<TarEntry, Buffer>): Buffer {
  const sorted = [...replacements].sort(([a], [b]) => a.headerOffset - b.headerOffset);
  const parts: Buffer[] = [];
  let at = 0;
  for (const [entry, data] of sorted) {
    if (entry.paxSize) {
      throw new TarFormatError(
        `${entry.name}: its size is in a PAX header, which this rewrite does not edit`,
      );
    }
    if (entry.headerOffset < at) throw new TarFormatError(`${entry.name}: replaced twice`);
    parts.push(tar.subarray(at, entry.headerOffset));
    const header = Buffer.from(tar.subarray(entry.headerOffset, entry.headerOffset + BLOCK));
    writeOctal(header, 124, 12, data.length);
    const sum = checksum(header).toString(8).padStart(6, "0");
    header.write(`${sum}\0 `, 148, 8, "latin1");
    parts.push(header, data);
    const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
    if (pad) parts.push(Buffer.alloc(pad));
    at = entry.end;
  }
  parts.push(tar.subarray(at));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// The same edit as a stream

/** What a rewrite does to a tarball, entry by entry. */
export interface TarEntryEditor {
  /** Whether `edit` wants this entry's data (held whole in memory: meant for small entries). */
  wants(name: string, type: string): boolean;
  /** The entry's new data, or undefined to keep the entry byte for byte. */
  edit(name: string, data: Buffer): Buffer | undefined;
  /** No entry can change: a caller may copy the tarball as stored without reading it. */
  readonly idle?: boolean;
}

/**
 * The most a stream holds of one entry (an extended header, or an entry handed to the editor):
 * far more than any Kubernetes object (etcd takes requests of 1.5 MiB at most), so only a hostile
 * or corrupt archive reaches it.
 */
export const MAX_HELD_ENTRY = 16 << 20;

const roundUp = (n: number) => Math.ceil(n / BLOCK) * BLOCK;

type Held =
  | { kind: "meta"; type: string; header: Buffer; size: number; where: string }
  | { kind: "entry"; name: string; header: Buffer; size: number; paxSize: boolean };

/**
 * `replaceTarData` over a stream: an uncompressed tar in, the same tar out with the entries the
 * editor replaces rewritten (size field, checksum, data, zero padding) and every other byte passed
 * through as it came, trailer and anything after it included. Entries are read exactly as
 * `listTarEntries` reads them (PAX `path`/`size`, GNU long names, base-256 sizes); only extended
 * headers and the entries the editor wants are held in memory, each at most MAX_HELD_ENTRY.
 * Fails with TarFormatError where `listTarEntries` or `replaceTarData` would.
 */
export class TarRewriteStream extends Transform {
  /** Entries read (extended headers folded in), and those replaced: final once the stream ends. */
  entries = 0;
  replaced = 0;
  /** Input bytes consumed. */
  private at = 0;
  private phase: "header" | "pass" | "hold" | "trailer" = "header";
  /** Bytes still to pass through ("pass") or to gather ("header", "hold"). */
  private left = BLOCK;
  private gathered: Buffer[] = [];
  private held: Held | undefined;
  private readonly global = new Map<string, string>();
  private local = new Map<string, string>();
  private longName: string | undefined;
  /** Where the header being read, or the entry being passed or held, starts (for errors). */
  private where = 0;
  private out: Buffer[] = [];

  constructor(private readonly editor: TarEntryEditor) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.consume(chunk);
      this.flushOut();
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  /**
   * What one input chunk produced, pushed as one buffer: the next stream (gzip) then works on
   * chunks as large as its input's rather than on each 512-byte header (a third less CPU).
   */
  private flushOut(): void {
    if (this.out.length === 0) return;
    this.push(this.out.length === 1 ? this.out[0] : Buffer.concat(this.out));
    this.out = [];
  }

  override _flush(callback: TransformCallback): void {
    if (this.phase === "trailer") {
      callback();
      return;
    }
    if (this.phase === "header") {
      callback(new TarFormatError(`truncated at byte ${this.where}: no end-of-archive marker`));
      return;
    }
    callback(new TarFormatError(`entry header at byte ${this.where}: data runs past the end of the archive`));
  }

  private consume(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.phase === "trailer") {
        this.output(i === 0 ? chunk : chunk.subarray(i));
        this.at += chunk.length - i;
        return;
      }
      const n = Math.min(this.left, chunk.length - i);
      const piece = chunk.subarray(i, i + n);
      i += n;
      this.at += n;
      this.left -= n;
      if (this.phase === "pass") {
        this.output(piece);
        if (this.left === 0) this.nextHeader();
        continue;
      }
      this.gathered.push(piece);
      if (this.left > 0) continue;
      const bytes = this.gathered.length === 1 ? piece : Buffer.concat(this.gathered);
      this.gathered = [];
      if (this.phase === "header") this.header(bytes);
      else this.release(bytes);
    }
  }

  private output(bytes: Buffer): void {
    this.out.push(bytes);
  }

  private nextHeader(): void {
    this.phase = "header";
    this.left = BLOCK;
    this.where = this.at;
  }

  /** Passes `length` bytes (an entry's data and padding) through, then reads the next header. */
  private pass(length: number): void {
    if (length === 0) {
      this.nextHeader();
      return;
    }
    this.phase = "pass";
    this.left = length;
  }

  private hold(held: Held): void {
    if (held.size > MAX_HELD_ENTRY) {
      const what = held.kind === "meta" ? `extended header (type ${held.type})` : held.name;
      throw new TarFormatError(
        `entry header at byte ${this.where}: ${what} is ${held.size} bytes, more than the ${MAX_HELD_ENTRY} a rewrite reads`,
      );
    }
    this.held = held;
    const length = roundUp(held.size);
    if (length === 0) {
      this.release(Buffer.alloc(0));
      return;
    }
    this.phase = "hold";
    this.left = length;
  }

  private header(header: Buffer): void {
    const offset = this.where;
    if (isZeroBlock(header, 0)) {
      if (this.local.size > 0 || this.longName !== undefined) {
        throw new TarFormatError(`archive ends after an extended header at byte ${offset}`);
      }
      this.output(header);
      this.phase = "trailer";
      return;
    }
    const { where, size, type } = readHeader(header, offset);
    switch (type) {
      case "x":
      case "g":
      case "L":
        this.hold({ kind: "meta", type, header, size, where });
        return;
      case "K":
        this.output(header);
        this.pass(roundUp(size));
        return;
      default: {
        const magic = header.subarray(257, 263).toString("latin1");
        const prefix = magic === "ustar\0" ? ascii(header, 345, 155) : "";
        const ustarName = ascii(header, 0, 100);
        const name =
          this.local.get("path") ??
          this.longName ??
          this.global.get("path") ??
          (prefix ? `${prefix}/${ustarName}` : ustarName);
        const paxSize = this.local.get("size") ?? this.global.get("size");
        const realSize = paxSize === undefined ? size : Number(paxSize);
        if (!Number.isSafeInteger(realSize) || realSize < 0) {
          throw new TarFormatError(`${where}: bad PAX size "${paxSize}"`);
        }
        this.local = new Map();
        this.longName = undefined;
        this.entries++;
        if (this.editor.wants(name, type)) {
          this.hold({ kind: "entry", name, header, size: realSize, paxSize: paxSize !== undefined });
          return;
        }
        this.output(header);
        this.pass(roundUp(realSize));
        return;
      }
    }
  }

  /** A held extended header or entry, with its padding, is complete. */
  private release(bytes: Buffer): void {
    const held = this.held;
    this.held = undefined;
    if (!held) throw new TarFormatError("internal: nothing held");
    const data = bytes.subarray(0, held.size);
    if (held.kind === "meta") {
      if (held.type === "x") this.local = paxRecords(data, held.where);
      else if (held.type === "g") for (const [k, v] of paxRecords(data, held.where)) this.global.set(k, v);
      else this.longName = ascii(data, 0, data.length);
      this.output(held.header);
      if (bytes.length > 0) this.output(bytes);
      this.nextHeader();
      return;
    }
    const replacement = this.editor.edit(held.name, data);
    if (replacement === undefined) {
      this.output(held.header);
      if (bytes.length > 0) this.output(bytes);
      this.nextHeader();
      return;
    }
    if (held.paxSize) {
      throw new TarFormatError(`${held.name}: its size is in a PAX header, which this rewrite does not edit`);
    }
    const header = Buffer.from(held.header);
    writeOctal(header, 124, 12, replacement.length);
    const sum = checksum(header).toString(8).padStart(6, "0");
    header.write(`${sum}\0 `, 148, 8, "latin1");
    this.output(header);
    if (replacement.length > 0) this.output(replacement);
    const pad = roundUp(replacement.length) - replacement.length;
    if (pad) this.output(Buffer.alloc(pad));
    this.replaced++;
    this.nextHeader();
  }
}
