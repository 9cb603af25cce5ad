import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AUDIT_DECISIONS, AUDIT_EVENTS, REFUSAL_CODES, refusalCodeOf } from '../src/audit/types.ts';
import { ErrorCodes } from '../src/errors.ts';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** The README's "Audit events" table: its first column, split into the events it names. */
function documentedEvents(): Map<string, string> {
  const section = readme.split('### Audit events')[1]?.split(/\n#{2,3} /)[0];
  if (!section) throw new Error('README has no "### Audit events" section');
  const rows = new Map<string, string>();
  for (const line of section.split('\n')) {
    if (!line.startsWith('| `')) continue;
    const [, events, , decisions] = line.split('|');
    for (const event of events!.matchAll(/`([^`]+)`/g)) rows.set(event[1]!, decisions!);
  }
  return rows;
}

describe('audit vocabulary', () => {
  it.each(AUDIT_EVENTS)('the README documents %s', (event) => {
    expect(documentedEvents().has(event)).toBe(true);
  });

  it('documents no event the code cannot write', () => {
    expect([...documentedEvents().keys()].filter((e) => !(AUDIT_EVENTS as readonly string[]).includes(e))).toEqual([]);
  });

  it('names only decisions of the vocabulary in the decision column', () => {
    const named = [...documentedEvents().values()].flatMap((cell) =>
      [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!),
    );
    expect(named.length).toBeGreaterThan(10);
    expect(named.filter((d) => !(AUDIT_DECISIONS as readonly string[]).includes(d))).toEqual([]);
  });
});

/** The README's "Refusal codes" table: the codes its first column names. */
function documentedCodes(): string[] {
  const section = readme.split('### Refusal codes')[1]?.split(/\n#{2,3} /)[0];
  if (!section) throw new Error('README has no "### Refusal codes" section');
  return section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .flatMap((line) => [...line.split('|')[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!));
}

describe('refusal codes', () => {
  it.each(REFUSAL_CODES)('the README documents %s', (code) => {
    expect(documentedCodes()).toContain(code);
  });

  it('documents no code the code cannot write', () => {
    expect(documentedCodes().filter((c) => !(REFUSAL_CODES as readonly string[]).includes(c))).toEqual([]);
  });

  it('spells every code snake_case, also those mapped from an ErrorCode', () => {
    const mapped = Object.values(ErrorCodes).map(refusalCodeOf);
    for (const code of [...REFUSAL_CODES, ...mapped]) expect(code).toMatch(/^[a-z]+(_[a-z]+)*$/);
    expect(refusalCodeOf('CALL_ABANDONED')).toBe('abandoned');
    expect(refusalCodeOf('AUDIT_WRITE_FAILED')).toBe('audit_write_failed');
  });
});
