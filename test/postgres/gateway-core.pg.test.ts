// The same behaviour tests as test/gateway-core.test.ts, on PostgreSQL.
import { useStore } from '../support/store-under-test.ts';

useStore('postgres');
await import('../gateway-core.test.ts');
