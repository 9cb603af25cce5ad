import { join, resolve } from 'node:path';

/**
 * Policy YAML pieces that several tests share. Pure string builders (no
 * Warden modules imported), so a parse-only test can use them too.
 */

export const ROOT = resolve(import.meta.dirname, '../..');
export const FIXTURES = join(ROOT, 'test/fixtures');
export const EVERYTHING = join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');

/** YAML for a stdio server entry running one of our TypeScript fixtures under tsx. */
export function fixtureServer(file: string, args: string[] = [], extra = ''): string {
  const argv = ['--import', 'tsx', join(FIXTURES, file), ...args].map((a) => JSON.stringify(a)).join(', ');
  return `command: ${JSON.stringify(process.execPath)}\n    args: [${argv}]\n    cwd: ${JSON.stringify(ROOT)}${extra ? `\n    ${extra}` : ''}`;
}

export function everythingServer(extra = ''): string {
  return `command: ${JSON.stringify(process.execPath)}\n    args: [${JSON.stringify(EVERYTHING)}, "stdio"]${extra ? `\n    ${extra}` : ''}`;
}

/**
 * A `servers:` block for tests that parse a policy but never start an
 * upstream (kill switch, anomaly rules, schedules): one server, one read tool.
 */
export const UNSTARTED_SERVERS_YAML = `servers:
  tickets:
    command: node
    args: [x.js]
    tools:
      read_ticket: { scope: read }`;

export type HelpdeskRole = 'tickets' | 'kb' | 'crm';

// Each helpdesk fixture tool (test/fixtures/helpdesk-server.ts) as the shared demo catalogue classifies it.
const HELPDESK_TOOLS: Record<HelpdeskRole, string> = {
  tickets: `
      list_tickets:        { scope: read }
      read_ticket:         { scope: read }
      close_ticket:        { scope: write, consequence: reversible }
      send_customer_email: { scope: write, consequence: customer-facing }`,
  kb: `
      search_kb: { scope: read }`,
  crm: `
      lookup_customer: { scope: read }
      refund_request:  { scope: write, consequence: irreversible }`,
};

/**
 * A `servers:` block with one entry per role, named after the role, each
 * running the real helpdesk fixture with every tool classified:
 *
 *   tickets: list_tickets, read_ticket (read); close_ticket (write, reversible);
 *            send_customer_email (write, customer-facing)
 *   kb:      search_kb (read)
 *   crm:     lookup_customer (read); refund_request (write, irreversible)
 *
 * More server entries may follow it at two spaces' indent:
 *
 *   `${helpdeskServersYaml(['tickets'])}
 *     web:
 *       url: …
 *   agents: …`
 */
export function helpdeskServersYaml(roles: readonly HelpdeskRole[]): string {
  const entries = roles.map(
    (role) => `  ${role}:\n    ${fixtureServer('helpdesk-server.ts', [role])}\n    tools:${HELPDESK_TOOLS[role]}`,
  );
  return ['servers:', ...entries].join('\n');
}
