// The same behaviour tests as test/slack-approvals.test.ts, on PostgreSQL.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../slack-approvals.test.ts');
