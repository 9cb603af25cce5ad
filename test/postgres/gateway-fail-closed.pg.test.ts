// The same behaviour tests as test/gateway-fail-closed.test.ts, on PostgreSQL.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../gateway-fail-closed.test.ts');
