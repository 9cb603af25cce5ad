import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlPolicyText } from './support/control-env.ts';
import { blocksText, ONCALL_USER, STRANGER, startControlSlack, type ControlSlack } from './support/control-slack.ts';

/** `/agents status` lists grants in force; `/agents revoke AGENT [TOOL]` ends them (owner, approvers, halters only). */

const POLICY = controlPolicyText(`
  - agent: support-triage
    owner: U0OWNER
    channel: C0OWNER
    mcp_scopes: { slow: [read] }
    approval_required: [sleep]
    grants: { max: 1h }
`);

let c: ControlSlack;
beforeAll(async () => {
  c = await startControlSlack({ policyText: POLICY });
});
afterAll(async () => {
  await c?.close();
});

describe('/agents and grants', () => {
  it('status shows a grant; a stranger may not revoke it, the owner may; status then shows none', async () => {
    const grant = await c.h.approvals.grants.create(c.h.policy, {
      agent: 'support-triage',
      server: 'slow',
      tool: 'sleep',
      by: 'U0OWNER',
      forMs: 30 * 60_000,
    });

    const status = await c.command(ONCALL_USER, '/agents', 'status support-triage');
    const shown = blocksText((await status.next()).args.blocks);
    expect(shown).toContain('*Grants in force*');
    expect(shown).toContain('*support-triage* may call `slow__sleep` without a card until');
    expect(shown).toContain('granted by <@U0OWNER>');

    const refused = await c.command(STRANGER, '/agents', 'revoke support-triage slow__sleep');
    expect(String((await refused.next()).args.text)).toContain('Not allowed');
    expect((await c.h.approvals.grants.list()).map((g) => g.id)).toEqual([grant.id]);
    await c.audit.flush();
    expect(c.h.auditRows('control.refused').at(-1)).toMatchObject({ decision: 'forbidden' });

    const revoked = await c.command('U0OWNER', '/agents', 'revoke support-triage slow__sleep');
    expect(String((await revoked.next()).args.text)).toContain('Revoked 1 grant(s) of `support-triage`: `slow__sleep`');
    expect(await c.h.approvals.grants.list()).toEqual([]);
    await c.audit.flush();
    expect(c.h.auditRows('grant.ended').at(-1)).toMatchObject({ decision: 'revoked', approver: 'U0OWNER' });

    const again = await c.command(ONCALL_USER, '/agents', 'status support-triage');
    expect(blocksText((await again.next()).args.blocks)).not.toContain('Grants in force');
    const none = await c.command(ONCALL_USER, '/agents', 'revoke support-triage');
    expect(String((await none.next()).args.text)).toContain('No grants in force for `support-triage`');
  });
});
