// The same behaviour tests as test/grants.test.ts, on PostgreSQL.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../grants.test.ts');
