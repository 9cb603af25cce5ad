// The same behaviour tests as test/approvals-cli.test.ts, on PostgreSQL.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../approvals-cli.test.ts');
