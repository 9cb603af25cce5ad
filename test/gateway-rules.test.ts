import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, textOf, type Harness } from './support/gateway-harness.ts';
import { helpdeskServersYaml } from './support/policies.ts';

/**
 * Argument rules through the real gateway and the helpdesk fixture: the
 * decision follows the arguments, the agent reads the rule in a refusal, and
 * the call.decided row records which rule decided.
 */

const POLICY = `${helpdeskServersYaml(['crm'])}
agents:
  - agent: billing-bot
    mcp_scopes: { crm: [read, write] }
    owner: U0123ABCD
    channel: C0123ABCD
    rules:
      - tool: crm__refund_request
        when: "args.amount > 5000"
        then: deny
        reason: refunds over 5,000 go through finance
      - tool: crm__refund_request
        when: "args.amount <= 50"
        then: allow
`;

let h: Harness;
beforeAll(async () => {
  h = await startHarness(POLICY);
});
afterAll(async () => {
  await h?.close();
});

const decidedRow = (callId?: string) =>
  callId
    ? h.rows({ event: 'call.decided', callId })[0]!
    : h.rows({ event: 'call.decided', agent: 'billing-bot' }).at(-1)!;

describe('rules at the gateway', () => {
  it('a small refund runs without a card, and its audit row names the allow rule', async () => {
    const c = await h.connect('billing-bot');
    const res = await c.callTool({
      name: 'crm__refund_request',
      arguments: { customer_id: 'C-1', amount: 12.5, reason: 'late delivery' },
    });
    expect(res.isError).toBeFalsy();
    expect(textOf(res)).toContain('"refunded":true');
    await h.flush();
    const row = decidedRow();
    expect(row).toMatchObject({ decision: 'allow', tool: 'refund_request' });
    expect(JSON.parse(row.detail!)).toMatchObject({
      policy_rule: { index: 1, effect: 'allow', tool: 'crm__refund_request', when: 'args.amount <= 50' },
    });
    expect(h.rows({ event: 'approval.requested', agent: 'billing-bot' })).toHaveLength(0);
  });

  it('a large refund is refused with the rule named, and its audit row records the rule', async () => {
    const c = await h.connect('billing-bot');
    const res = await c.callTool({
      name: 'crm__refund_request',
      arguments: { customer_id: 'C-1', amount: 9000, reason: 'goodwill' },
    });
    expect(res.isError).toBe(true);
    expect(textOf(res)).toContain('rules[0] (when args.amount > 5000): refunds over 5,000 go through finance');
    await h.flush();
    const row = decidedRow();
    expect(row).toMatchObject({ decision: 'deny', tool: 'refund_request' });
    expect(JSON.parse(row.detail!)).toMatchObject({
      code: 'rule',
      policy_rule: { index: 0, effect: 'deny', reason: 'refunds over 5,000 go through finance' },
    });
  });
});
