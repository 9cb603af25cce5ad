// The same behaviour tests as test/policy-changes.test.ts, on PostgreSQL.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../policy-changes.test.ts');
