// A ZIP archive of a few small files, stored without compression (method 0): the whole format
// needed for a device bundle, so no library. Layout (PKWARE's APPNOTE.TXT): for each file a local
// header and its bytes, then the central directory, then its end record.

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// MS-DOS date and time, the only timestamps the basic headers hold (2-second steps, local time).
function dosDateTime(date) {
  const time = (date.getHours() << 11) | (date.getMinutes() << 5) | (date.getSeconds() >> 1);
  const day = ((date.getFullYear() - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate();
  return { time, day };
}

const UTF8_NAMES = 0x0800; // general purpose flag bit 11: file names are UTF-8
const MADE_BY_UNIX = (3 << 8) | 20; // host Unix (so the external attributes carry a file mode), spec 2.0

// The fields a local header and its central directory entry share, in the same order ("version
// needed to extract" to "file name length"): from byte 4 of the one and byte 6 of the other.
function writeShared(view, at, { time, day, crc, size, nameLength }) {
  view.setUint16(at, 20, true); // version needed: 2.0
  view.setUint16(at + 2, UTF8_NAMES, true);
  view.setUint16(at + 4, 0, true); // stored
  view.setUint16(at + 6, time, true);
  view.setUint16(at + 8, day, true);
  view.setUint32(at + 10, crc, true);
  view.setUint32(at + 14, size, true); // compressed size: stored, so the size itself
  view.setUint32(at + 18, size, true);
  view.setUint16(at + 22, nameLength, true);
}

// files: [{ name, data: string | Uint8Array, mode?: 0o600 }] -> Blob (application/zip)
export function zip(files, date = new Date()) {
  const encoder = new TextEncoder();
  const { time, day } = dosDateTime(date);
  const parts = [];
  const directory = [];
  let offset = 0;
  for (const file of files) {
    const name = encoder.encode(file.name);
    const data = typeof file.data === "string" ? encoder.encode(file.data) : file.data;
    const entry = { time, day, crc: crc32(data), size: data.length, nameLength: name.length };
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    writeShared(local, 4, entry);
    // extra length: 0
    parts.push(local, name, data);

    const central = new DataView(new ArrayBuffer(46));
    central.setUint32(0, 0x02014b50, true);
    central.setUint16(4, MADE_BY_UNIX, true);
    writeShared(central, 6, entry);
    // extra length, comment length, disk number, internal attributes: all 0
    central.setUint32(38, ((0o100000 | (file.mode ?? 0o644)) << 16) >>> 0, true); // regular file + mode
    central.setUint32(42, offset, true);
    directory.push(central, name);
    offset += 30 + name.length + data.length;
  }
  const directorySize = directory.reduce((size, part) => size + part.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, files.length, true); // entries on this disk
  end.setUint16(10, files.length, true); // entries in all
  end.setUint32(12, directorySize, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...directory, end], { type: "application/zip" });
}
