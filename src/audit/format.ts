import type { OutputFormat } from './query.ts';
import type { AuditRow } from './types.ts';

/** Renders query results for people (table), spreadsheets (csv) or programs (json). */
export function formatRows(rows: readonly AuditRow[], format: OutputFormat): string {
  switch (format) {
    case 'json':
      return formatJson(rows);
    case 'csv':
      return formatCsv(rows);
    case 'table':
      return formatTable(rows);
  }
}

const CSV_COLUMNS = [
  'seq',
  'ts',
  'event',
  'call_id',
  'agent',
  'owner',
  'server',
  'tool',
  'decision',
  'reason',
  'approver',
  'duration_ms',
  'args',
  'result',
  'detail',
  'prev_hash',
  'hash',
] as const;

/** RFC 4180: CRLF line ends, a header row, fields quoted when they hold , " CR or LF. */
export function formatCsv(rows: readonly AuditRow[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const row of rows) {
    lines.push(CSV_COLUMNS.map((col) => csvCell(col === 'ts' ? new Date(row.ts).toISOString() : row[col])).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

/**
 * One CSV field. Text a spreadsheet would run as a formula (= + - @, or a
 * leading tab/CR that some apps strip first) gets a leading ' — audit data
 * carries agent- and upstream-controlled text.
 */
export function csvCell(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return String(value);
  const guarded = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(guarded) ? `"${guarded.replace(/"/g, '""')}"` : guarded;
}

function parseJsonColumn(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch {
    // A truncated result is no longer JSON: hand it over as the text it is.
    return text;
  }
}

export function formatJson(rows: readonly AuditRow[]): string {
  return JSON.stringify(
    rows.map((r) => ({
      seq: r.seq,
      ts: r.ts,
      time: new Date(r.ts).toISOString(),
      event: r.event,
      call_id: r.call_id,
      agent: r.agent,
      owner: r.owner,
      server: r.server,
      tool: r.tool,
      decision: r.decision,
      reason: r.reason,
      approver: r.approver,
      duration_ms: r.duration_ms,
      args: parseJsonColumn(r.args),
      result: parseJsonColumn(r.result),
      detail: parseJsonColumn(r.detail),
      prev_hash: r.prev_hash,
      hash: r.hash,
    })),
    null,
    2,
  );
}

interface TableColumn {
  title: string;
  max: number;
  cell: (r: AuditRow) => string;
  right?: boolean;
}

const TABLE_COLUMNS: readonly TableColumn[] = [
  { title: 'SEQ', max: 10, cell: (r) => String(r.seq), right: true },
  { title: 'TIME (UTC)', max: 19, cell: (r) => new Date(r.ts).toISOString().slice(0, 19).replace('T', ' ') },
  { title: 'EVENT', max: 20, cell: (r) => r.event },
  { title: 'AGENT', max: 24, cell: (r) => r.agent ?? '' },
  {
    title: 'TOOL',
    max: 36,
    cell: (r) => (r.server && r.tool && !r.tool.includes('__') ? `${r.server}__${r.tool}` : (r.tool ?? r.server ?? '')),
  },
  { title: 'DECISION', max: 10, cell: (r) => r.decision ?? '' },
  { title: 'APPROVER', max: 14, cell: (r) => r.approver ?? '' },
  { title: 'MS', max: 8, cell: (r) => (r.duration_ms === null ? '' : String(r.duration_ms)), right: true },
  { title: 'REASON', max: 60, cell: (r) => r.reason ?? '' },
];

function fit(text: string, width: number): string {
  // One line per row whatever the data holds.
  const flat = text.replace(/[\u0000-\u001f\u007f]+/g, ' ');
  return flat.length > width ? `${flat.slice(0, width - 1)}…` : flat;
}

/** Fixed-width text: each column as wide as its widest cell, capped; long cells end in …. */
export function formatTable(rows: readonly AuditRow[]): string {
  if (rows.length === 0) return '(no matching audit rows)\n';
  const cells = rows.map((r) => TABLE_COLUMNS.map((c) => fit(c.cell(r), c.max)));
  const widths = TABLE_COLUMNS.map((c, i) => Math.max(c.title.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: readonly string[]) =>
    values
      .map((v, i) => (TABLE_COLUMNS[i]!.right ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return (
    [line(TABLE_COLUMNS.map((c) => c.title)), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n') +
    '\n'
  );
}
