import type { types } from '@slack/bolt';
import { REDACTED } from '../../audit/index.ts';
import { SlackLimits } from './limits.ts';
import { codeBlock, codeBlockBody, escapeMrkdwn, revealInvisible, truncate } from './text.ts';

type KnownBlock = types.KnownBlock;

/**
 * The arguments of a held call, as the approver must see them: every key
 * with its own value, each cut separately, so a long value can never push a
 * short one (`to`, `amount`) off the card. Pure: drawn from the stored
 * (already redacted) arguments.
 *
 * Sizes are fixed by construction. All entries together stay within
 * `ARGS_TEXT_BUDGET`, so the whole card stays under Slack's undocumented
 * total (`SlackLimits.messageBlocksTextSoft`); each entry fits one section.
 */

/** Characters of argument text on a card (labels, fences and values). */
export const ARGS_TEXT_BUDGET = 5500;
/** Every shown key gets at least this much of its value (code block body, cut marker included). */
export const MIN_VALUE_CHARS = 48;
/** A key's path is cut to this on the card (the thread shows it whole). */
export const KEY_LABEL_MAX = 100;
/** Nested objects are shown as `parent.child` keys down to this depth; deeper values are shown as JSON. */
export const FLATTEN_DEPTH = 4;
/** One entry (label and value) fits one section with room to spare. */
const ENTRY_MAX = SlackLimits.sectionText - 100;
const CUT_MARKER = '\n…(cut)';
const FENCES = 6;

/** The full arguments in the card's thread: code sections of this size, this many per message, at most this many messages. */
export const THREAD_CHUNK_CHARS = 2800;
export const THREAD_SECTIONS_PER_MESSAGE = 3;
export const THREAD_MAX_MESSAGES = 12;

export interface ArgumentEntryView {
  /** The key's path (`to`, `recipient.email`), as shown before any cut. */
  path: string;
  redacted: 'full' | 'partial' | undefined;
  /** Length of the value's text; 0 for a redacted value. */
  chars: number;
  /** The value was cut to fit. */
  cut: boolean;
  /** The key's name was cut to fit. */
  keyCut: boolean;
}

export interface ArgumentsView {
  /** The heading and the entries, in sections. */
  blocks: KnownBlock[];
  totalKeys: number;
  /** Entries on the card, in the agent's order (the first `shown.length` keys). */
  shown: ArgumentEntryView[];
  /** Paths of the keys not on the card at all. */
  hiddenPaths: string[];
  /** Redacted keys (whole value) and keys whose text had credential-like parts replaced. */
  redacted: string[];
  partlyRedacted: string[];
  /** Values hidden from people, over all keys (shown or not): whole values under secret-named keys, and credential-like pieces replaced inside text. */
  hiddenValues: { secretKeys: number; inText: number };
  /** Anything cut or left out: the card shows a warning and the thread carries the full arguments. */
  incomplete: boolean;
}

interface Leaf {
  path: string;
  value: unknown;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function segment(key: string): string {
  return /^[A-Za-z_$][\w$-]*$/.test(key) ? key : JSON.stringify(key);
}

/** Leaves of nested objects, in order; arrays and deep values stay whole. */
function flatten(value: unknown, path: string, depth: number, out: Leaf[]): void {
  if (isPlainObject(value) && depth < FLATTEN_DEPTH && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value))
      flatten(v, path === '' ? segment(k) : `${path}.${segment(k)}`, depth + 1, out);
    return;
  }
  out.push({ path, value });
}

/** The text people read for a value: strings as they are (an empty one as ""), anything else as JSON. */
function valueText(value: unknown): string {
  if (typeof value === 'string') return revealInvisible(value.trim() === '' ? JSON.stringify(value) : value);
  return prettyJsonText(value, 'value');
}

/** Pretty JSON, invisible characters shown; a value JSON cannot carry becomes a quoted "[<what> could not be shown]". */
function prettyJsonText(value: unknown, what: string): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value ?? null, null, 2);
  } catch {
    json = undefined;
  }
  return revealInvisible(json ?? `"[${what} could not be shown]"`);
}

/** Inline code that content cannot break out of. */
function inlineCode(text: string, max: number): { text: string; cut: boolean } {
  const body = escapeMrkdwn(revealInvisible(text))
    .replace(/`/g, 'ˋ')
    .replace(/[\r\n]+/g, ' ');
  const cut = truncate(body, max);
  return { text: `\`${cut}\``, cut: cut.length < body.length };
}

interface Planned {
  leaf: Leaf;
  label: string;
  keyCut: boolean;
  redacted: 'full' | 'partial' | undefined;
  text: string;
  /** Code block body length before any cut. */
  need: number;
}

function plan(leaf: Leaf): Planned {
  const key = inlineCode(leaf.path === '' ? '(arguments)' : leaf.path, KEY_LABEL_MAX);
  if (leaf.value === REDACTED) {
    return {
      leaf,
      label: `${key.text} :lock: _redacted: sent to the tool, not shown_`,
      keyCut: key.cut,
      redacted: 'full',
      text: '',
      need: 0,
    };
  }
  const partial = typeof leaf.value === 'string' && leaf.value.includes(REDACTED);
  const text = valueText(leaf.value);
  return {
    leaf,
    label: partial ? `${key.text} _(credential-like text redacted)_` : key.text,
    keyCut: key.cut,
    redacted: partial ? 'partial' : undefined,
    text,
    need: codeBlockBody(text).length,
  };
}

/** Characters an entry takes besides its value (label, newline, fences, separator). */
function overhead(p: Planned): number {
  return p.redacted === 'full' ? p.label.length + 1 : p.label.length + 1 + FENCES + 1;
}

/**
 * Max-min fair shares: short values are shown whole, the rest split what is
 * left evenly, and nobody gets less than min(need, MIN_VALUE_CHARS).
 */
function waterFill(needs: number[], caps: number[], budget: number): number[] {
  const order = needs.map((_, i) => i).sort((a, b) => Math.min(needs[a]!, caps[a]!) - Math.min(needs[b]!, caps[b]!));
  const out = needs.map(() => 0);
  let left = budget;
  order.forEach((i, j) => {
    const share = Math.floor(left / (order.length - j));
    out[i] = Math.max(0, Math.min(needs[i]!, caps[i]!, share));
    left -= out[i]!;
  });
  return out;
}

export function renderArguments(args: unknown): ArgumentsView {
  const leaves: Leaf[] = [];
  if (isPlainObject(args) && Object.keys(args).length === 0) {
    // Nothing to hide.
  } else {
    flatten(args, '', 0, leaves);
  }
  const planned = leaves.map(plan);

  // As many keys as fit with at least MIN_VALUE_CHARS each, in the agent's order.
  let used = 0;
  let count = 0;
  for (const p of planned) {
    const cost = overhead(p) + (p.redacted === 'full' ? 0 : Math.min(p.need, MIN_VALUE_CHARS));
    if (used + cost > ARGS_TEXT_BUDGET) break;
    used += cost;
    count++;
  }
  const shown = planned.slice(0, count);
  const valued = shown.filter((p) => p.redacted !== 'full');
  const budget = ARGS_TEXT_BUDGET - shown.reduce((n, p) => n + overhead(p), 0);
  const caps = waterFill(
    valued.map((p) => p.need),
    valued.map((p) => ENTRY_MAX - overhead(p)),
    budget,
  );
  const capOf = new Map(valued.map((p, i) => [p, caps[i]!]));

  const entries: string[] = [];
  const views: ArgumentEntryView[] = [];
  for (const p of shown) {
    if (p.redacted === 'full') {
      entries.push(p.label);
      views.push({ path: p.leaf.path, redacted: 'full', chars: 0, cut: false, keyCut: p.keyCut });
      continue;
    }
    const cap = capOf.get(p)!;
    entries.push(`${p.label}\n${codeBlock(p.text, cap + FENCES, CUT_MARKER)}`);
    views.push({ path: p.leaf.path, redacted: p.redacted, chars: p.text.length, cut: p.need > cap, keyCut: p.keyCut });
  }

  const hiddenPaths = planned.slice(count).map((p) => p.leaf.path);
  const heading =
    leaves.length === 0
      ? '*Arguments*: none'
      : `*Arguments* — ${leaves.length} ${leaves.length === 1 ? 'key' : 'keys'}${hiddenPaths.length > 0 ? `, *only ${count} shown*` : ''} (secrets redacted)`;
  const blocks: KnownBlock[] = [{ type: 'section', text: { type: 'mrkdwn', text: heading } }];
  // Entries in order, packed into sections; each entry is below the section limit, so none is split or dropped.
  let current = '';
  for (const e of entries) {
    if (current !== '' && current.length + 1 + e.length > SlackLimits.sectionText) {
      blocks.push({ type: 'section', text: { type: 'mrkdwn', text: current } });
      current = '';
    }
    current = current === '' ? e : `${current}\n${e}`;
  }
  if (current !== '') blocks.push({ type: 'section', text: { type: 'mrkdwn', text: current } });

  return {
    blocks,
    totalKeys: leaves.length,
    shown: views,
    hiddenPaths,
    redacted: views.filter((v) => v.redacted === 'full').map((v) => v.path),
    partlyRedacted: views.filter((v) => v.redacted === 'partial').map((v) => v.path),
    incomplete: hiddenPaths.length > 0 || views.some((v) => v.cut || v.keyCut),
    hiddenValues: countHidden(leaves),
  };
}

/** `a`, `b`, `c` and 4 more — cut to `max` characters whatever the names. */
function pathList(paths: string[], max: number): string {
  const parts: string[] = [];
  let length = 0;
  for (let i = 0; i < paths.length; i++) {
    const part = inlineCode(paths[i]!, 40).text;
    const more = paths.length - i;
    if (length + part.length + 2 + ` and ${more} more`.length > max) return `${parts.join(', ')} and ${more} more`;
    parts.push(part);
    length += part.length + 2;
  }
  return parts.join(', ');
}

/**
 * The loud part: what the card does not show, and where to read it. Null
 * when every key is shown in full.
 */
export function argumentsWarning(view: ArgumentsView, thread: ArgumentsThreadPlan): string | null {
  if (!view.incomplete) return null;
  // Most important first: the whole text is bounded (about 1,300 characters), and the details come last.
  const lines = [':rotating_light: *Not every argument is shown in full on this card.*'];
  if (view.hiddenPaths.length > 0) {
    lines.push(
      `• *${view.hiddenPaths.length} of ${view.totalKeys} keys are not shown at all*: ${pathList(view.hiddenPaths, 400)}`,
    );
  }
  lines.push(
    thread.complete
      ? '*The full arguments (secrets redacted) are in this message’s thread. Read them before you approve.*'
      : `*The arguments are ${thread.totalChars.toLocaleString('en-US')} characters: only the first ${thread.postedChars.toLocaleString('en-US')} are in this message’s thread. ` +
          'Do not approve what you could not read.*',
  );
  const cut = view.shown.filter((v) => v.cut);
  if (cut.length > 0) {
    const sizes = cut
      .slice(0, 8)
      .map((v) => `${inlineCode(v.path, 40).text} (${v.chars.toLocaleString('en-US')} chars)`);
    lines.push(`• Values cut to fit: ${sizes.join(', ')}${cut.length > 8 ? ` and ${cut.length - 8} more` : ''}`);
  }
  const keyCut = view.shown.filter((v) => v.keyCut).length;
  if (keyCut > 0) lines.push(`• ${keyCut} key ${keyCut === 1 ? 'name is' : 'names are'} cut`);
  return lines.join('\n');
}

function countHidden(leaves: Leaf[]): { secretKeys: number; inText: number } {
  let secretKeys = 0;
  let inText = 0;
  for (const leaf of leaves) {
    if (leaf.value === REDACTED) secretKeys++;
    else inText += valueText(leaf.value).split(REDACTED).length - 1;
  }
  return { secretKeys, inText };
}

/** How many values the approver cannot see and why; null when none. */
export function hiddenValuesLine(view: ArgumentsView): string | null {
  const { secretKeys, inText } = view.hiddenValues;
  const total = secretKeys + inText;
  if (total === 0) return null;
  const why: string[] = [];
  if (secretKeys > 0) why.push(`${secretKeys} under a secret-named key`);
  if (inText > 0)
    why.push(
      `${inText} credential-like text inside a value (private key, token, JWT, URL password, password=/secret: pair)`,
    );
  return `:warning: *${total} ${total === 1 ? 'value is' : 'values are'} hidden from you*: ${why.join('; ')}. The tool receives what the agent sent, unredacted.`;
}

/** The redaction notice, or null when nothing was redacted. */
export function redactionNotice(view: ArgumentsView): string | null {
  const lines: string[] = [];
  const hidden = hiddenValuesLine(view);
  if (hidden) lines.push(hidden);
  if (view.redacted.length > 0)
    lines.push(`:lock: *Redacted* — sent to the tool but not shown here: ${pathList(view.redacted, 450)}`);
  if (view.partlyRedacted.length > 0) {
    lines.push(
      `:lock: Credential-like text shown as ${REDACTED} here, sent to the tool unchanged: ${pathList(view.partlyRedacted, 300)}`,
    );
  }
  return lines.length > 0 ? lines.join('\n') : null;
}

/** Pretty JSON of the (already redacted) arguments, invisible characters shown. */
export function fullArgumentsText(args: unknown): string {
  return prettyJsonText(args, 'arguments');
}

export interface ArgumentsThreadPlan {
  /** Code block bodies (escaped), each within one section; only those that will be posted. */
  chunks: string[];
  /** Characters of the escaped full text, and how many of them the chunks carry. */
  totalChars: number;
  postedChars: number;
  complete: boolean;
}

/** The full arguments cut into thread-sized pieces; what the card promises and the thread posts are the same plan. */
export function planArgumentsThread(args: unknown): ArgumentsThreadPlan {
  const body = codeBlockBody(fullArgumentsText(args));
  const all = splitBody(body, THREAD_CHUNK_CHARS);
  const chunks = all.slice(0, THREAD_SECTIONS_PER_MESSAGE * THREAD_MAX_MESSAGES);
  const postedChars = chunks.reduce((n, c) => n + c.length, 0);
  return { chunks, totalChars: body.length, postedChars, complete: chunks.length === all.length };
}

/**
 * Splits `body` (already escaped) into pieces of at most `max`, preferring
 * line ends, never inside a surrogate pair or an `&amp;`-style entity.
 */
export function splitBody(body: string, max: number): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < body.length) {
    let end = Math.min(body.length, i + max);
    if (end < body.length) {
      const newline = body.lastIndexOf('\n', end - 1);
      if (newline >= i + max / 2) end = newline + 1;
      const c = body.charCodeAt(end - 1);
      if (c >= 0xd800 && c <= 0xdbff) end -= 1;
      const amp = body.lastIndexOf('&', end - 1);
      if (amp !== -1 && amp > end - 5) {
        const entity = /^&(?:amp|lt|gt);/.exec(body.slice(amp, amp + 5));
        if (entity && amp + entity[0].length > end) end = amp;
      }
    }
    out.push(body.slice(i, end));
    i = end;
  }
  return out;
}
