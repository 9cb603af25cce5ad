import { existsSync, readFileSync } from 'node:fs';

/**
 * How many transactions have been committed into a WAL file since it was
 * last reset: the frames of the current WAL generation (salts equal to the
 * header's) that carry a commit marker. `PRAGMA data_version` cannot count
 * commits: it changes once however many commits happened between two reads.
 */
export function walCommits(dbPath: string): number {
  const path = `${dbPath}-wal`;
  if (!existsSync(path)) return 0;
  const wal = readFileSync(path);
  if (wal.length < 32) return 0;
  const pageSize = wal.readUInt32BE(8);
  const salt1 = wal.readUInt32BE(16);
  const salt2 = wal.readUInt32BE(20);
  let commits = 0;
  for (let off = 32; off + 24 + pageSize <= wal.length; off += 24 + pageSize) {
    if (wal.readUInt32BE(off + 8) !== salt1 || wal.readUInt32BE(off + 12) !== salt2) break;
    if (wal.readUInt32BE(off + 4) !== 0) commits++;
  }
  return commits;
}
