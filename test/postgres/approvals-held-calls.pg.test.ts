// The same behaviour tests as test/approvals-held-calls.test.ts, on PostgreSQL.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../approvals-held-calls.test.ts');
