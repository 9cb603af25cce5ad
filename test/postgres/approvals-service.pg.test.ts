// The same behaviour tests as test/approvals-service.test.ts, on PostgreSQL.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../approvals-service.test.ts');
