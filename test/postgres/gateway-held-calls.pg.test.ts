// The same behaviour tests as test/gateway-held-calls.test.ts, on PostgreSQL.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../gateway-held-calls.test.ts');
