/**
 * The byte-level half of the failover rewrite: a Velero backup tarball (`<name>.tar.gz`, written by
 * Go's archive/tar in pkg/backup: one regular-file entry per item, USTAR headers, names over 100
 * bytes split into USTAR's prefix field) read as a list of entries and edited in place. Only the
 * entries we replace change, and in them only the data, the size field and the checksum; every
 * other byte of the archive (other entries, their order, headers, padding, trailer) is kept.
 *
 * Reads what real tar writers produce: POSIX USTAR (with prefix), PAX extended headers (`x`, `g`;
 * `path` and `size` records), GNU long names (`L`, `K`) and GNU base-256 sizes.
 * Pure: Buffers in, Buffers out; no fs.
 */
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
    const where = `entry header at byte ${offset}`;
    const stored = numeric(header, 148, 8, `${where}: checksum`);
    if (stored !== checksum(header)) throw new TarFormatError(`${where}: bad checksum`);
    const size = numeric(header, 124, 12, `${where}: size`);
    const typeByte = header[156] ?? 0;
    const type = typeByte === 0 ? "0" : String.fromCharCode(typeByte);
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
